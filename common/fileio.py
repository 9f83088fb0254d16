"""Safe outputs shared by all subsystems: checks, advisory locks, atomic writes, provenance.

Every rawsigma output goes through three steps:

1. `check_output` (or `check_output_dir`) before any long work: refuses ``-``, an
   existing output without ``force``, a directory where a file is expected (or the
   reverse), a device or pipe, a non-zarr directory with files where a zarr store goes,
   an unwritable or read-only directory and a disk without room for the
   estimated size — each with one line naming the path.
2. `output_lock` while the output (or a resumable partial file) is being produced:
   an advisory ``fcntl.flock`` on ``.<name>.lock`` next to it holding the writer's PID,
   so a second rawsigma writing the same file is refused with
   ``another rawsigma (PID 1234) is writing cam.h5``. Holding the lock also makes
   it safe to remove temporaries a killed earlier run left (`clean_stale_temporaries`).
3. `atomic_write`: a temporary file next to the output, renamed over it on success,
   created with the user's umask (not ``mkstemp``'s 0600); any failure removes it
   and leaves a previous output untouched; "disk full" and "permission denied"
   become one-line `OutputError` messages.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import platform
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OutputError, OutputExistsError, OutputLockedError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "apply_umask",
    "atomic_write",
    "check_output",
    "check_distinct_outputs",
    "check_not_input",
    "check_output_dir",
    "clean_stale_temporaries",
    "current_umask",
    "describe_os_error",
    "output_lock",
    "provenance",
]

#: Free space kept in reserve beyond an output's estimated size, bytes.
SPACE_MARGIN = 1 << 20

_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


def current_umask() -> int:
    """The process umask (read without changing it where the OS allows)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # portable fallback: set and restore
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def apply_umask(path: str | os.PathLike, mode: int = 0o666) -> None:
    """Give ``path`` the permissions a plain ``open()`` would have: ``mode & ~umask``."""
    os.chmod(path, mode & ~current_umask())


def describe_os_error(exc: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for an OS error while writing ``path`` ("disk full", "permission denied")."""
    text = str(exc)
    no = exc.errno
    if no is None:  # h5py and others put errno in the text only
        m = re.search(r"errno = (\d+)", text)
        no = int(m.group(1)) if m else None
    if no in _NO_SPACE or "No space left" in text:
        what = "disk full"
    elif no in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        what = "permission denied"
    elif no == errno.EROFS or "Read-only file system" in text:
        what = "read-only file system"
    elif no == errno.EISDIR:
        what = "is a directory"
    elif no == errno.ENOTDIR:
        what = "a parent is not a directory"
    else:
        what = exc.strerror or text.splitlines()[0] if text else type(exc).__name__
    target = path if path is not None else exc.filename
    return f"{target}: {what}" if target is not None else what


def _existing_ancestor(p: Path) -> Path:
    q = p.parent if str(p.parent) else Path(".")
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _check_dir_writable(p: Path, where: Path, need_bytes: int) -> None:
    """Probe ``where`` (the directory that will hold ``p``) for writability and room."""
    if not where.is_dir():
        raise OutputError(f"{p}: {where} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".rawsigma-probe.", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = describe_os_error(exc, None)
        raise OutputError(f"{p}: cannot write in {where} ({why})") from None
    if need_bytes > 0:
        free = shutil.disk_usage(where).free
        if free < need_bytes + SPACE_MARGIN:
            raise OutputError(
                f"{p}: not enough free space in {where}: {free / 1e6:.1f} MB free, "
                f"about {(need_bytes + SPACE_MARGIN) / 1e6:.1f} MB needed"
            )


def _refuse_stdout(p: Path) -> None:
    if str(p) == "-":
        raise OutputError("--out -: writing to standard output is not supported; give a file name")


def check_output(
    path: str | os.PathLike, force: bool = False, need_bytes: int = 0, allow_dir: bool = False
) -> Path:
    """Return ``path`` as a Path after checking that a file can be written there.

    Parameters
    ----------
    path : path-like
        Output file.
    force : bool
        Allow replacing an existing file.
    need_bytes : int
        Estimated size of the output (and its temporaries); the directory must have
        that much free space plus `SPACE_MARGIN`. 0 skips the space check.
    allow_dir : bool
        The output is itself a directory (a zarr store): an existing directory is
        the output, an existing file is in the way.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``force`` is False.
    OutputError
        ``-``, a directory in the way, a device, pipe or socket (``--force`` would
        replace the node by a file), a directory holding files that is not a zarr store
        (``allow_dir``; ``--force`` would delete them), an unwritable or read-only
        directory, a parent that is a file, not enough free space.
    """
    p = Path(path)
    _refuse_stdout(p)
    if p.is_dir() and not allow_dir:
        raise OutputError(f"{p}: is a directory; give a file name")
    if p.exists() and not p.is_dir() and not p.is_file():
        raise OutputError(
            f"{p}: not a regular file (a device, pipe or socket); rawsigma writes a new "
            "file and renames it into place, which would replace it: give a file name"
        )
    if allow_dir and p.exists() and not p.is_dir():
        raise OutputError(f"{p}: is a file; this output is a directory")
    if allow_dir and p.is_dir() and not _is_zarr_store(p) and any(p.iterdir()):
        raise OutputError(
            f"{p}: a directory that is not a zarr store, with files in it; --force "
            "replaces only a zarr store: choose another name or remove it yourself"
        )
    if p.exists() and not force:
        raise OutputExistsError(f"{p}: file exists; use --force to overwrite it")
    _check_dir_writable(p, _existing_ancestor(p), need_bytes)
    return p


def _is_zarr_store(p: Path) -> bool:
    """True when directory ``p`` is a zarr (v2 or v3) array or group."""
    return any((p / m).is_file() for m in ("zarr.json", ".zarray", ".zgroup"))


def _source_path(spec: str | os.PathLike) -> Path | None:
    """The file or directory an input spec names (``FILE.h5:/ds``, ``F.tif[0:9]``)."""
    s = str(spec)
    for cand in (s, re.sub(r"\[[^\]]*\]$", "", s), s.rsplit(":", 1)[0]):
        if cand and os.path.exists(cand):
            return Path(cand)
    return None


def check_not_input(path: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Refuse an output that is one of the command's inputs (even with ``--force``).

    Writing it would replace the input (raw frames, a profile) by the output.
    Inputs may carry a dataset or frame selection (``FILE.h5:/ds``, ``F.tif[0:9]``).

    Raises
    ------
    OutputError
        ``path`` exists and is the same file (or directory) as one of ``inputs``.
    """
    p = Path(path)
    if not p.exists():
        return
    for spec in inputs:
        src = None if spec is None else _source_path(spec)
        with contextlib.suppress(OSError):
            if src is not None and os.path.samefile(src, p):
                raise OutputError(
                    f"{p}: is the input {spec}; writing it would replace the input: "
                    "choose another output name"
                )


def check_distinct_outputs(**outputs: str | os.PathLike | None) -> None:
    """Refuse two options naming the same output file (the second would replace the first).

    Parameters
    ----------
    **outputs
        Option name (``out``, ``save_frames``) to path; None is skipped.

    Raises
    ------
    UsageError
        Two of them are the same path.
    """
    from .errors import UsageError

    seen: dict[str, str] = {}
    for name, path in outputs.items():
        if path is None:
            continue
        key = os.path.normcase(os.path.abspath(os.fspath(path)))
        if key in seen:
            a, b = (f"--{n.replace('_', '-')}" for n in (seen[key], name))
            raise UsageError(f"{a} and {b} are the same file {path}; give each its own name")
        seen[key] = name


def check_output_dir(path: str | os.PathLike, need_bytes: int = 0) -> Path:
    """Check that ``path`` can be used (or created) as an output directory.

    Raises
    ------
    OutputError
        ``-``, a file in the way, an unwritable directory, not enough free space.
    """
    p = Path(path)
    _refuse_stdout(p)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{p}: is a file; --out must be a directory")
    _check_dir_writable(p, p if p.is_dir() else _existing_ancestor(p), need_bytes)
    return p


# ---------------------------------------------------------------- locks
_HELD: dict[str, int] = {}
_HELD_LOCK = threading.Lock()


def _lock_path(p: Path) -> Path:
    return p.with_name(f".{p.name}.lock")


def _holder(lock: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(lock.read_text().split()[0])
        return f"PID {pid}"
    return "PID unknown"


def _acquire(lock: Path, target: Path) -> int:
    import fcntl

    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            why = describe_os_error(exc, None)
            raise OutputError(f"{target}: cannot create lock file ({why})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(
                f"another rawsigma ({_holder(lock)}) is writing {target}; wait for it to "
                "finish or stop it"
            ) from None
        try:  # the previous holder may have removed the file between open and flock
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the advisory lock of an output while it is produced.

    The lock is ``fcntl.flock`` on ``.<name>.lock`` next to ``path`` (created with the
    parent directories; removed on release; the kernel releases it if the process
    dies). Re-entrant within a process.

    Yields
    ------
    Path
        ``path``.

    Raises
    ------
    OutputLockedError
        Another process holds the lock; the message names its PID.
    OutputError
        The lock file cannot be created (unwritable directory).
    """
    p = Path(path)
    _refuse_stdout(p)
    lock = _lock_path(p)
    key = os.path.abspath(lock)
    with _HELD_LOCK:
        if key in _HELD:
            _HELD[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield p
        finally:
            with _HELD_LOCK:
                _HELD[key] -= 1
        return
    made = _missing_parents(p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, p.parent)) from None
    try:
        fd = _acquire(lock, p)
    except BaseException:
        _remove_empty(made)
        raise
    with _HELD_LOCK:
        _HELD[key] = 1
    try:
        clean_stale_temporaries(p)
        yield p
    finally:
        with _HELD_LOCK:
            del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)
        _remove_empty(made)  # a run that wrote nothing leaves no new empty folders


def _missing_parents(p: Path) -> list[Path]:
    """The folders above ``p`` that do not exist yet, deepest first."""
    missing = []
    for d in p.absolute().parents:
        if d.exists():
            break
        missing.append(d)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty; keep the others."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return  # not empty (the output is there) or gone: the ones above stay too


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries an earlier, killed writer of ``path`` left next to it.

    Only call it while holding `output_lock` of ``path``. Matches exactly the names
    rawsigma's writers use: ``.<name>.XXXXXXXX.tmp`` (`atomic_write`),
    ``.<name>.tmp`` (partial checkpoints, zarr stores) and ``.<name>.partial`` (frame
    files). Returns the removed paths.
    """
    p = Path(path)
    pat = re.compile(rf"^\.{re.escape(p.name)}(\.[A-Za-z0-9_]{{8}})?\.(tmp|partial)$")
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(p.parent):
            if pat.match(entry.name):
                q = Path(entry.path)
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(q)
                    else:
                        q.unlink()
                    removed.append(q)
    return removed


# ---------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, force: bool = False, need_bytes: int = 0
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    The temporary file gets the user's umask. An exception inside the block
    removes it and leaves any previous ``path`` untouched; an OS error (disk full,
    permission denied) becomes an `OutputError` naming ``path``.

    Examples
    --------
    >>> with atomic_write("profile.h5", force=True) as tmp:  # doctest: +SKIP
    ...     write_hdf5(tmp)
    """
    p = check_output(path, force, need_bytes)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        os.close(fd)
        apply_umask(tmp)
    except OSError as exc:
        raise OutputError(f"{describe_os_error(exc, p)}; nothing written") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, p)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            kept = "previous file kept" if p.exists() else "nothing written"
            raise OutputError(f"{describe_os_error(exc, p)}; {kept}") from exc
        raise


def provenance(**extra: Any) -> dict[str, Any]:
    """Return a record of how an output was made.

    Contains the rawsigma, Python and numpy versions, the host and the UTC date,
    updated with ``extra`` (plan, seeds, profile id, ...).
    """
    import numpy

    from . import __version__

    rec: dict[str, Any] = {
        "software": "rawsigma",
        "software_version": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "host": platform.node(),
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    rec.update(extra)
    return rec
