"""The output folder: what hetreport may replace, and one visible switch per run.

A run never writes into the folder a user named (``--out OUT``) file by file. It

1. checks ``OUT`` before any work: it must be new, empty, or an earlier hetreport output
   (recognised by :data:`MARKER`, which lists every file hetreport wrote there, or for
   outputs of earlier versions by ``manifest.json``/``project.json`` and the names hetreport
   writes), and hold no file hetreport did not write; a file, an unwritable folder or a
   foreign file is an error naming it, before any fitting;
2. takes a lock (:data:`LOCK`, ``fcntl.flock``) so that a second run into the same folder
   stops with the first one's process id;
3. removes leftovers of an earlier interrupted run (``OUT.partial-*`` / ``OUT.old-*`` beside
   ``OUT`` whose owner is gone, ``report.partial-*`` and older versions' dot folders inside);
4. writes the new outputs into a visible sibling ``OUT.partial-<8 hex digits>`` (results, then the
   report rendered in its ``report/``: no path inside the output starts with ``.`` or ``_``,
   so Quarto reads ``_quarto.yml``) and ends with :data:`MARKER`;
5. swaps that folder with ``OUT`` in one atomic exchange (Linux ``renameat2(RENAME_EXCHANGE)``,
   macOS ``renamex_np(RENAME_SWAP)``) and then deletes the old generation. Where the system has
   no exchange, two renames are used and a run killed between them is rolled forward by the
   next run (the complete new generation is recognised by its marker).

So at any moment ``OUT`` holds the complete earlier outputs or the complete new ones.

``HETREPORT_FAULT=<step>`` (test-only) makes the process SIGKILL itself at that step; the
kill tests in ``tests/test_outdir.py`` use it to check the promise above at every step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fnmatch
import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .errors import HetreportError

MARKER = ".hetreport-output.json"  # the files of this generation, with sizes and SHA-256
LOCK = ".hetreport.lock"
OURS = {MARKER, LOCK}

# Outputs of hetreport versions before the marker: the names they wrote
LEGACY_TOP = [
    "effects.csv",
    "effects.parquet",
    "groups.csv",
    "diagnostics.json",
    "summary.json",
    "posterior_*.nc",
    "analysis_*.json",
    "ppc_*.npz",
    "spec.yml",
    "manifest.json",
    "project.json",
    "contrasts.csv",
    "contrasts.parquet",
    "targeting.csv",
    "targeting_groups.csv",
]
LEGACY_REPORT = [
    "report.*",
    "brief.*",
    "appendix.*",
    "_quarto.yml",
    "figures/*",
    "paper/*",
    "paper/figures/*",
    "paper/tables/*",
    "*_files/*",
    "*_files/*/*",
    "*_files/*/*/*",
]
LEGACY_TREES = ["site", "studies"]  # a project's folders, written whole

_written: list[Path] = []  # outputs this process switched into place (for the CLI's last message)
_stages: set[Path] = set()  # staging folders of this process (writing there needs no new transaction)


class OutputError(HetreportError):
    kind = "Output error"


class Busy(OutputError):
    pass


def fault(step: str) -> None:
    """Test-only: ``HETREPORT_FAULT=step`` kills this process (SIGKILL, no cleanup) here."""
    if os.environ.get("HETREPORT_FAULT") == step:
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def written() -> list[Path]:
    return list(_written)


def is_stage(path: Path) -> bool:
    return Path(path).absolute() in _stages


def visible_path(path: Path, root: Path) -> bool:
    """No part of ``path`` below ``root``'s parent starts with '.' or '_' (Quarto ignores such paths)."""
    rel = Path(path).absolute().relative_to(Path(root).absolute().parent)
    return not any(p.startswith((".", "_")) for p in rel.parts)


# --------------------------------------------------------------------------- locks


class _Lock:
    def __init__(self, path: Path, what: str):
        self.path, self.fd = Path(path), None
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            if not _try_lock(fd):
                holder = _read_holder(fd)
                os.close(fd)
                raise Busy(
                    f"another hetreport ({holder}) is writing {what}. Wait for it to finish, or give another --out. Nothing was written."
                )
            try:  # the file may have been swapped away between open and lock: lock the one at the path
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                break
            os.close(fd)
        else:  # pragma: no cover - a folder swapped twenty times in a row
            raise Busy(f"{what} keeps changing under another hetreport; wait for it to finish.")
        os.ftruncate(self.fd, 0)
        os.write(
            self.fd,
            json.dumps(
                {"pid": os.getpid(), "command": " ".join(sys.argv[:3]), "since": datetime.now(UTC).isoformat(timespec="seconds")}
            ).encode(),
        )

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"process {info['pid']}, `{info['command']}`, since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "another process"


def _owner_gone(folder: Path) -> bool:
    """A staging or old folder whose lock nobody holds any more (its run was killed)."""
    lock = folder / LOCK
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the swap


def _libc():
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the system cannot."""
    if os.environ.get("HETREPORT_NO_EXCHANGE"):  # test-only: the two-rename route of other systems
        return False
    try:
        libc = _libc()
    except OSError:
        return False
    if libc is None:
        return False
    fa, fb = os.fsencode(str(a)), os.fsencode(str(b))
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        rc = libc.renameat2(-100, fa, -100, fb, 2)  # AT_FDCWD, RENAME_EXCHANGE
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rc = libc.renamex_np(fa, fb, 2)  # RENAME_SWAP
    else:
        return False
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the file system cannot exchange: two renames
    raise OSError(err, os.strerror(err), str(a))


# --------------------------------------------------------------------------- what is ours


def _files(folder: Path) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        for f in files:
            out.append((Path(root) / f).relative_to(folder).as_posix())
        for d in dirs:
            p = Path(root) / d
            if p.is_symlink():
                out.append(p.relative_to(folder).as_posix())
    return sorted(out)


def read_marker(folder: Path) -> dict | None:
    try:
        m = json.loads((Path(folder) / MARKER).read_text())
        return m if isinstance(m, dict) and isinstance(m.get("files"), dict) else None
    except (OSError, ValueError):
        return None


def _legacy(folder: Path) -> bool:
    for name in ("manifest.json", "project.json"):
        try:
            m = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and ("hetreport_version" in m or "studies" in m):
            return True
    return False


def _is_leftover_name(name: str) -> bool:
    return name.startswith((".report-", ".hetreport-")) or fnmatch.fnmatch(name, "report.partial-*")


def foreign_files(folder: Path) -> list[str]:
    """Files in ``folder`` that hetreport did not write (relative paths)."""
    folder = Path(folder)
    files = [f for f in _files(folder) if f not in OURS and not _is_leftover_name(f.split("/")[0])]
    marker = read_marker(folder)
    if marker is not None:
        return [f for f in files if f not in marker["files"]]
    if not files:
        return []
    if not _legacy(folder):
        return files

    def legacy_ours(f: str) -> bool:
        top, _, rest = f.partition("/")
        if not rest:
            return any(fnmatch.fnmatch(top, p) for p in LEGACY_TOP)
        if top in LEGACY_TREES:
            return True
        if top in ("report", "mock"):
            return any(fnmatch.fnmatch(rest, p) for p in LEGACY_REPORT) or (top == "mock" and legacy_ours(rest))
        return False

    return [f for f in files if not legacy_ours(f)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_marker(folder: Path, kind: str, target: str = "") -> None:
    from . import __version__

    files = {f: {"size": (folder / f).stat().st_size, "sha256": _sha256(folder / f)} for f in _files(folder) if f not in OURS}
    (folder / MARKER).write_text(
        json.dumps(
            {
                "hetreport_version": __version__,
                "kind": kind,
                "target": target,
                "complete": True,
                "written": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": files,
            },
            indent=1,
        )
    )


def check_complete(folder: Path) -> list[str]:
    """Problems of a generation against its marker ([] when every listed file is there, unchanged, and no other)."""
    marker = read_marker(folder)
    if marker is None:
        return ["no marker"]
    problems = []
    on_disk = {f for f in _files(folder) if f not in OURS}
    for f, info in marker["files"].items():
        if f not in on_disk:
            problems.append(f"missing {f}")
        elif _sha256(folder / f) != info["sha256"]:
            problems.append(f"changed {f}")
    problems += [f"extra {f}" for f in sorted(on_disk - set(marker["files"]))]
    return problems


# --------------------------------------------------------------------------- the transaction


def _shorten(items: list[str], k: int = 6) -> str:
    shown = ", ".join(items[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")


def _suggest(out: Path) -> str:
    for i in range(2, 100):
        cand = out.with_name(f"{out.name}-{i}")
        if not cand.exists():
            return str(cand)
    return str(out) + "-new"


class Output:
    """``with Output(out) as o:``: checked, locked and cleaned before any work; ``o.stage()``
    gives the folder to write the new generation into, ``o.commit(stage)`` switches it in."""

    def __init__(self, out: str | Path, kind: str = "study", what: str = "--out"):
        self.out = Path(out).absolute()
        self.kind, self.what = kind, what
        self.base = self.out.name.lstrip("._") or "output"
        self.created = self.committed = self.lock_created = False
        self.lock: _Lock | None = None
        self.stages: list[tuple[Path, _Lock]] = []

    # ---- checks, before any work
    def __enter__(self) -> Output:
        out, shown = self.out, f"{self.what} '{self.out}'"
        for parent in [out, *out.parents]:
            if parent.exists() or parent.is_symlink():
                if not parent.is_dir():
                    where = "is a file" if parent == out else f"lies under '{parent}', which is a file"
                    raise OutputError(f"{shown} {where}; give a folder for the outputs (it is created if missing). Nothing was written.")
                break
        self._recover()
        if not out.exists():
            try:
                out.mkdir(parents=True)  # the user's umask applies
            except OSError as exc:
                raise OutputError(
                    f"{shown} cannot be created ({exc.strerror}); give a folder you can write. Nothing was written."
                ) from None
            self.created = True
        self._refuse_foreign(shown)  # before the lock file: a refused folder is left exactly as it was
        self.lock_created = not (out / LOCK).exists()
        try:
            self.lock = _Lock(out / LOCK, shown)
        except Busy:
            raise
        except OSError as exc:  # a probe that writes: as root a read-only mode bit does not stop writing
            self._undo_created()
            raise OutputError(f"{shown} cannot be written ({exc.strerror}); give a folder you can write. Nothing was written.") from None
        try:
            self._clean_leftovers()
            self._refuse_foreign(shown)  # again, under the lock
            probe = self._new_stage_dir()  # the sibling the new outputs go to must be writable too
            shutil.rmtree(probe)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _refuse_foreign(self, shown: str) -> None:
        foreign = foreign_files(self.out)
        if foreign:
            raise OutputError(
                f"{shown} holds files hetreport did not write: {_shorten(foreign)}. hetreport replaces only a new or empty "
                f"folder or its own earlier outputs, and stops here, before any fitting; nothing was written. Move those "
                f"files elsewhere, or give a new folder (e.g. --out {_suggest(self.out)})."
            )

    def _undo_created(self) -> None:
        if self.created and self.out.is_dir() and not [f for f in _files(self.out) if f not in OURS]:
            shutil.rmtree(self.out, ignore_errors=True)
            self.created = False

    def __exit__(self, et, ev, tb) -> None:
        for stage, lock in self.stages:
            shutil.rmtree(stage, ignore_errors=True)
            lock.release()
            _stages.discard(stage)
        self.stages = []
        if self.lock is not None:
            if self.lock_created and not self.committed:  # leave no trace in a folder nothing was written to
                try:
                    os.unlink(self.out / LOCK)
                except OSError:
                    pass
            self.lock.release()
            self.lock = None
        self._undo_created()

    def _siblings(self, kind: str) -> list[Path]:
        try:
            return sorted(p for p in self.out.parent.glob(f"{self.base}.{kind}-*") if p.is_dir() and not p.is_symlink())
        except OSError:
            return []

    def _recover(self) -> None:
        """A run killed between the two renames of the fallback swap: roll the complete new generation forward."""
        if self.out.exists():
            return
        for stage in self._siblings("partial"):
            marker = read_marker(stage)
            if marker is not None and marker.get("target") == self.out.name and _owner_gone(stage) and not check_complete(stage):
                os.replace(stage, self.out)
                return

    def _clean_leftovers(self) -> None:
        for p in self._siblings("partial") + self._siblings("old"):
            if _owner_gone(p):
                shutil.rmtree(p, ignore_errors=True)
        for p in list(self.out.iterdir()):
            if p.is_dir() and not p.is_symlink() and _is_leftover_name(p.name):
                # report.partial-* of this version (its lock is gone with its owner), .report-*/.hetreport-* of older ones
                if not (p / LOCK).exists() or _owner_gone(p):
                    shutil.rmtree(p, ignore_errors=True)

    def _new_stage_dir(self) -> Path:
        for _ in range(10):
            p = self.out.parent / f"{self.base}.partial-{secrets.token_hex(4)}"
            try:
                p.mkdir()  # not mkdtemp: the user's umask, not drwx------
                return p
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputError(
                    f"{self.what} '{self.out}': its folder '{self.out.parent}' cannot be written ({exc.strerror}); "
                    "hetreport writes the new outputs beside the old ones and then swaps them in. Nothing was written."
                ) from None
        raise OutputError(f"cannot make a staging folder beside '{self.out}'.")  # pragma: no cover

    # ---- writing
    def stage(self, carry: bool = False) -> Path:
        """A new, locked, private folder for the next generation. ``carry``: the current outputs
        except the report are linked into it (re-rendering keeps the fitted results)."""
        p = self._new_stage_dir()
        lock = _Lock(p / LOCK, f"'{p}'")
        self.stages.append((p, lock))
        _stages.add(p)
        if carry:
            for f in self.carried():
                src, dst = self.out / f, p / f
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)  # our files are never changed in place: a link is a copy
                except OSError:
                    shutil.copy2(src, dst)
        return p

    def carried(self) -> list[str]:
        return [f for f in _files(self.out) if f not in OURS and not f.startswith("report/") and not _is_leftover_name(f.split("/")[0])]

    def commit(self, stage: Path) -> Path:
        """Switch ``stage`` in as the output folder: one atomic step."""
        write_marker(stage, self.kind, self.out.name)
        fault("before-switch")
        if exchange(stage, self.out):
            fault("after-switch")
            old = stage  # the swap left the earlier generation at the staging path
        else:
            old = self.out.parent / f"{self.base}.old-{secrets.token_hex(4)}"
            os.replace(self.out, old)
            fault("between-renames")
            os.replace(stage, self.out)
            fault("after-switch")
        for i, (p, lock) in enumerate(self.stages):
            if p == stage:
                # the new generation's lock file is at OUT now and stays locked by us until the end
                self.stages[i] = (old, lock)
                _stages.discard(p)
        self.created = False
        self.committed = True
        _written.append(self.out)
        return self.out


def recover(out: str | Path) -> None:
    """Finish a switch that a killed run left half done (only on systems without an atomic exchange)."""
    Output(out)._recover()


@contextmanager
def transaction(out: str | Path, kind: str = "study", what: str = "--out", carry: bool = False):
    """Check and lock ``out``, yield a staging folder, switch it in when the block ends without error."""
    with Output(out, kind=kind, what=what) as o:
        stage = o.stage(carry=carry)
        yield stage
        o.commit(stage)
