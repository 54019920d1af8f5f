"""`hetreport check`'s estimates against a real fit: fitting time and peak memory per analysis.

Sizes every analysis of a spec with `hetreport.check.check` (nothing fitted), then runs
`hetreport fit SPEC` as a fresh process (under `/usr/bin/time -v` when it exists, for the peak
resident memory) and prints, per analysis, the estimated seconds next to the manifest's measured
`total_s`, and the ratio. The estimate is rough by design (constants in hetreport/check.py, from
measurements on a quiet 2-core machine); this script is how they are re-measured.

    python benchmarks/bench_check.py                                  # examples/simulated/spec.yml
    python benchmarks/bench_check.py examples/tomz-weeks/spec.yml     # ~15 min on 2 cores
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    spec = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "examples" / "simulated" / "spec.yml"
    from hetreport.check import check

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = check(spec)
    est = {p.analysis.name: p.size for p in study.analyses}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        cmd = [sys.executable, "-m", "hetreport.cli", "fit", str(spec), "--out", str(out), "--no-progress"]
        timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
        if timer:
            cmd = [timer, "-v", *cmd]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(r.stderr[-2000:])
        manifest = json.loads((out / "manifest.json").read_text())
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    print(f"{spec}: fit in {wall:.0f} s wall; load {load0:.2f} before, {os.getloadavg()[0]:.2f} after (1-min average)")
    print(f"{'analysis':24} {'groups':>6} {'terms':>5} {'params':>7} {'estimate s':>10} {'measured s':>10} {'measured/est':>12}")
    for name, size in est.items():
        measured = manifest["timings"][name]["total_s"]
        print(
            f"{name:24} {size.groups:6d} {size.terms:5d} {size.parameters:7d} {size.seconds:10.0f} {measured:10.0f} {measured / size.seconds:12.2f}"
        )
    if peak:
        top = max(s.memory_bytes for s in est.values())
        print(f"peak resident memory {int(peak.group(1)) / 1e6:.2f} GB; largest estimate {top / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
