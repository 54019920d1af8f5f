#!/usr/bin/env python
"""Benchmark: the report as a user waits for it -- `hetreport report DIR` (build the Quarto project: figures,
tables, the two documents and paper/; then render HTML, PDF and Word on the builtin route) with this checkout
against an earlier revision, each a fresh process, in the same invocation.

DIR is a folder written by `hetreport fit` or `hetreport run` (the bundled example's five analyses are the
case the README times). Each run works on its own copy of DIR, so the folder given is never changed. The two
revisions' runs alternate (old, new, old, new, ...), so a change in the machine's load moves both. Both use the
same Python and packages, so the ratio is of hetreport's code alone; the script also checks that the two
revisions wrote the same report.html and the same PDF text.

    python benchmarks/bench_report.py --fitted out/tomz-weeks --baseline REV            # one pair
    python benchmarks/bench_report.py --fitted out/tomz-weeks --baseline REV --repeat 2

It prints per run the process's wall and CPU seconds (the process and the pandoc/Typst processes it waited
for) and the load average before and after, then the medians and the old/new ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import ROOT, load, tree_at  # noqa: E402

FORMATS = ("html", "pdf", "docx")


def one_run(tree: Path, fitted: Path, work: Path) -> dict:
    import resource

    out = work / "out"
    shutil.copytree(fitted, out, symlinks=True)
    cmd = [sys.executable, "-m", "hetreport.cli", "report", str(out)] + [a for f in FORMATS for a in ("--format", f)] + ["--no-quarto"]
    before, t0, l0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter(), load()
    r = subprocess.run(cmd, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"`hetreport report` with {tree} failed:\n{r.stderr[-3000:]}")
    report = out / "report"
    pdf_text = (
        subprocess.run(["pdftotext", str(report / "report.pdf"), "-"], capture_output=True).stdout if shutil.which("pdftotext") else b""
    )
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "load": (l0, load()),
        "html": hashlib.sha256((report / "report.html").read_bytes()).hexdigest(),
        "pdf_text": hashlib.sha256(pdf_text).hexdigest(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fitted", required=True, type=Path, help="a folder written by `hetreport fit` or `hetreport run`")
    ap.add_argument("--baseline", required=True, metavar="REV", help="the revision to compare this checkout with")
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs (default 1)")
    args = ap.parse_args()
    fitted = args.fitted.resolve()
    if not (fitted / "manifest.json").is_file():
        raise SystemExit(f"{fitted} holds no manifest.json: give a folder written by `hetreport fit` or `hetreport run`.")
    old_tree = tree_at(args.baseline)
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for i in range(args.repeat):
        for label, tree in (("old", old_tree), ("new", ROOT)):
            with tempfile.TemporaryDirectory(prefix=f"bench-report-{label}-") as work:
                r = one_run(tree, fitted, Path(work))
            runs[label].append(r)
            print(
                f"{label} ({args.baseline if label == 'old' else 'this checkout'}) run {i + 1}: wall {r['wall_s']:.1f} s, "
                f"CPU {r['cpu_s']:.1f} s ({r['load'][0]} -> {r['load'][1]})",
                flush=True,
            )
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall_s", "cpu_s")} for k, v in runs.items()}
    same_html = len({r["html"] for v in runs.values() for r in v}) == 1
    same_pdf = len({r["pdf_text"] for v in runs.values() for r in v}) == 1
    print(
        f"median old: wall {med['old']['wall_s']:.1f} s, CPU {med['old']['cpu_s']:.1f} s; "
        f"new: wall {med['new']['wall_s']:.1f} s, CPU {med['new']['cpu_s']:.1f} s"
    )
    print(
        f"old/new: wall {med['old']['wall_s'] / med['new']['wall_s']:.2f}x, CPU {med['old']['cpu_s'] / med['new']['cpu_s']:.2f}x; "
        f"report.html identical: {same_html}; PDF text identical: {same_pdf}"
    )
    shutil.rmtree(old_tree.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
