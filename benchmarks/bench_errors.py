"""How long a user waits for a spec or data error, and for `hetreport check` (issue 12 s3).

Every case is a fresh process, timed by wall clock, against a baseline `python -c pass` run in the same
invocation (interleaved, so machine load hits both alike). Prints the median of --repeat runs per case,
its ratio to the baseline, the time above the baseline, and the heaviest imports of the misspelt-key run
(`python -X importtime`).

    python benchmarks/bench_errors.py             # 5 runs per case
    python benchmarks/bench_errors.py --repeat 9

Goal: a spec or data error within 1 s of process start on the 2-core machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tomz-weeks" / "spec.yml"


def _cases(tmp: Path) -> dict[str, list[str]]:
    text = EXAMPLE.read_text()
    misspelt = tmp / "misspelt.yml"
    misspelt.write_text(text.replace("\noutcome: force", "\noutcom: force"))
    data_error = tmp / "data_error.yml"  # a treatment with more than two values: found when the data is read
    data_error.write_text(text.replace("\ntreatment: ally", "\ntreatment: pref"))
    for p in (misspelt, data_error):  # the spec's data path is relative to its folder
        p.write_text(p.read_text().replace("path: data/", f"path: {EXAMPLE.parent / 'data'}/"))
    cli = [sys.executable, "-m", "hetreport.cli"]
    return {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "run: misspelt key": cli + ["run", str(misspelt), "--out", str(tmp / "out")],
        "run: data error": cli + ["run", str(data_error), "--out", str(tmp / "out")],
        "check: Tomz-Weeks (5 analyses)": cli + ["check", str(EXAMPLE)],
    }


def _time(cmd: list[str], env: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, env=env, cwd=REPO)
    return time.perf_counter() - t0, r.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as d:
        cases = _cases(Path(d))
        times: dict[str, list[float]] = {k: [] for k in cases}
        codes: dict[str, int] = {}
        _time(cases["run: misspelt key"], env)  # warm the file cache once
        for _ in range(args.repeat):
            for name, cmd in cases.items():
                t, rc = _time(cmd, env)
                times[name].append(t)
                codes[name] = rc
        base = statistics.median(times["python -c pass (baseline)"])
        print(f"load: {os.getloadavg()[0]:.2f} (1-min average); {args.repeat} fresh processes per case, median wall time")
        print(f"{'case':34} {'median s':>9} {'x baseline':>11} {'above baseline s':>17} {'exit':>5}")
        for name, ts in times.items():
            m = statistics.median(ts)
            print(f"{name:34} {m:9.3f} {m / base:11.1f} {m - base:17.3f} {codes[name]:5d}")
        r = subprocess.run(
            [sys.executable, "-X", "importtime", *cases["run: misspelt key"][1:]], capture_output=True, text=True, env=env, cwd=REPO
        )
        rows = []
        for line in r.stderr.splitlines():
            if line.startswith("import time:") and "|" in line:
                parts = line[len("import time:") :].split("|")
                if parts[1].strip().isdigit():
                    rows.append((int(parts[1]), parts[2].rstrip()))
        total = sum(t for t, name in rows if not name.startswith("  "))  # one leading space: imported at top level
        print(f"\nmisspelt key: {total / 1e6:.3f} s of imports (python -X importtime, top-level packages); heaviest:")
        for t, name in sorted(rows, reverse=True)[:8]:
            print(f"  {t / 1e6:7.3f} s  {name.strip()}")
        heavy = [
            m
            for m in ("pymc", "arviz", "bambi", "pytensor", "nutpie", "plotnine", "matplotlib", "statsmodels")
            if any(name.strip() == m for _, name in rows)
        ]
        print("heavy modules imported before the error: " + (", ".join(heavy) if heavy else "none"))


if __name__ == "__main__":
    main()
