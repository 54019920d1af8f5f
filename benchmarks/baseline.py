"""Helpers for benchmarks that time this checkout against an earlier revision in the same invocation.

``tree_at(rev)`` writes the tracked files of revision ``rev`` (``git archive``) into a temporary folder;
``run_in(tree, code)`` runs ``code`` in a fresh interpreter with that tree first on ``PYTHONPATH`` (so it
imports that revision's hetreport) and returns the JSON object the code prints on its last line. Both
trees use the same Python and packages, so the ratio is of hetreport's code alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tree_at(rev: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix=f"hetreport-{rev[:12]}-"))
    archive = out / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev], check=True)
    with tarfile.open(archive) as t:
        t.extractall(out / "tree", filter="data")
    archive.unlink()
    return out / "tree"


def run_in(tree: Path, code: str, timeout: float | None = None) -> dict:
    """The JSON the code prints last, with ``cpu_s``: the CPU seconds of the process and every process it waited
    for (its worker processes), a figure that other programs' load moves far less than wall time."""
    import resource

    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"the run in {tree} failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return out


def load() -> str:
    """The machine's load average now, as `uptime` prints it."""
    a, b, c = os.getloadavg()
    return f"load average {a:.2f}, {b:.2f}, {c:.2f} on {os.cpu_count()} cores"
