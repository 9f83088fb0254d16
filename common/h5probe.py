"""Probe a user's HDF5 file in a child process before rawsigma opens it.

libhdf5 crashes (SIGSEGV) or loops forever on some damaged files (about 1 in 200-1000
flipped bytes of a small file: object headers, B-trees, heaps): a segfault, or a hang
that ignores Ctrl-C, instead of one clear line. `check_hdf5` walks the file in a child
process first (``sys.executable``, not fork: the caller may have threads holding locks),
touching what a reader touches: every group, dataset and named type, every attribute
(read), each dataset's dtype, shape, creation properties and chunk index, small
datasets read whole and one element of the others. A child that dies of a signal or
does not answer within the timeout means the file is damaged: `DamagedHDF5Error`, one
line. Any other outcome (the walk passed, or the file is refused cleanly by h5py) leaves
the real reader to say what it says today.

Cost: a child start plus ``import h5py`` (~0.2-0.4 s per file, once per process for
an unchanged file). ``RAWSIGMA_H5_PROBE=0`` skips the probe (trusted files, tight
loops); ``RAWSIGMA_H5_PROBE_TIMEOUT`` sets the timeout in seconds (default 30).

This module imports only the standard library at load time: the child loads it by
path, without importing rawsigma.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["check_hdf5", "probe_enabled", "walk"]

#: Seconds the child may take before the file is declared hung.
DEFAULT_TIMEOUT = 30.0
#: Bytes of dataset values the walk reads in full (the rest: one element per dataset).
READ_BUDGET = 32 << 20
#: Objects and chunks visited at most (a damaged file may claim billions).
MAX_OBJECTS = 100_000
MAX_CHUNKS = 1_000_000

#: Files probed in this process, by identity (path, inode, size, times): "" passed, else why not.
_PROBED: dict[tuple, str] = {}


def probe_enabled() -> bool:
    """False when ``RAWSIGMA_H5_PROBE`` is ``0`` (or ``no``/``false``/``off``)."""
    value = os.environ.get("RAWSIGMA_H5_PROBE", "1").strip().lower()
    return value not in ("0", "no", "false", "off")


def _timeout() -> float:
    try:
        t = float(os.environ.get("RAWSIGMA_H5_PROBE_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return t if t > 0 else DEFAULT_TIMEOUT


def _can_spawn() -> bool:
    """True when a Python can run the child.

    Not in a frozen app (there ``sys.executable`` is the app itself), nor in an
    interpreter embedded without one.
    """
    return bool(sys.executable) and not getattr(sys, "frozen", False)


def _key(p: Path) -> tuple | None:
    try:
        st = p.stat()
    except OSError:
        return None
    return (str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def check_hdf5(path: str | os.PathLike[str], timeout: float | None = None) -> None:
    """Refuse an HDF5 file on which libhdf5 crashes or hangs, in one line.

    Call it just before opening a user-supplied HDF5 file with h5py. A file that is
    not a regular file passes at once; one probed already in this process, unchanged
    (same size, times, inode), gets the same answer at once.

    Parameters
    ----------
    path
        The file.
    timeout
        Seconds the probe may take; default ``RAWSIGMA_H5_PROBE_TIMEOUT`` or 30.

    Raises
    ------
    DamagedHDF5Error
        The probe child died of a signal (libhdf5 crashed) or did not answer in time.
    """
    p = Path(path)
    if not probe_enabled() or not p.is_file() or not _can_spawn():
        return
    key = _key(p)
    if key is None:
        return
    if key not in _PROBED:
        _PROBED[key] = _run_child(p, _timeout() if timeout is None else timeout)
    if _PROBED[key]:
        from .errors import DamagedHDF5Error

        how = "seems damaged" if "did not answer" in _PROBED[key] else "is damaged"
        raise DamagedHDF5Error(f"cannot read {p}: the HDF5 file {how} ({_PROBED[key]})")


def _child_cmd(p: Path, timeout: float) -> list[str]:
    """The probe's command line: this file, loaded by path (rawsigma is not imported)."""
    code = (
        "import importlib.util as u, sys\n"
        "s = u.spec_from_file_location('_rawsigma_h5probe', sys.argv[1])\n"
        "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
        "m._child(sys.argv[2], float(sys.argv[3]))\n"
    )
    return [sys.executable, "-c", code, str(Path(__file__).resolve()), str(p), str(timeout)]


def _run_child(p: Path, timeout: float) -> str:
    """``""`` when the walk ended (passed or refused cleanly), else what happened."""
    import signal

    cmd = _child_cmd(p, timeout)
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return (
            f"libhdf5 did not answer in {timeout:g} s; if the file is only slow to read "
            "(very large, on a network drive), set RAWSIGMA_H5_PROBE_TIMEOUT to more seconds"
        )
    finally:  # also on Ctrl-C: no orphan left looping in libhdf5
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc == 0:
        return ""
    if rc in (-signal.SIGINT, -getattr(signal, "SIGTERM", 15), -getattr(signal, "SIGHUP", 1)):
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) reached the child with its parent
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"libhdf5 crashed: {name}"
    if os.name == "nt":  # an access violation is a large positive status there
        return f"libhdf5 crashed: exit status {rc:#x}"
    return ""  # Python could not run the walk: the real reader will say why


def _child(path: str, timeout: float) -> None:
    """The child's work: no core dump, the walk, exit 0 whatever h5py raised.

    SIGALRM ends a child left looping in libhdf5 after its parent was killed.
    """
    import signal

    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    if hasattr(signal, "alarm"):
        signal.alarm(int(timeout) + 5)
    try:
        walk(path)
    except Exception:  # noqa: BLE001, S110 - refused cleanly: the real reader says why
        pass
    sys.stdout.flush()
    os._exit(0)


def walk(path: str | os.PathLike[str]) -> None:
    """Touch everything in ``path`` a reader may touch (in this process: may crash).

    What the probe child runs; the fuzz tests run it in-process. Errors h5py raises
    are skipped object by object, so that a damaged attribute does not hide a crashing
    dataset behind it.

    Parameters
    ----------
    path
        The HDF5 file.

    Raises
    ------
    OSError
        h5py cannot open the file at all.
    """
    import h5py

    with h5py.File(path, "r") as f:
        state = {"seen": set(), "budget": READ_BUDGET, "objects": 0}
        _walk_group(f, state, 0)


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - h5py's clean refusals are not our business
        return None


def _walk_group(g: Any, state: dict, depth: int) -> None:
    _walk_attrs(g)
    names = _try(list, g) or []
    for name in names:
        if state["objects"] >= MAX_OBJECTS or depth > 64:
            return
        state["objects"] += 1
        link = _try(g.get, name, None, False, True)  # getlink: soft/external links
        if link is not None and type(link).__name__ == "ExternalLink":
            continue  # another file: its reader probes it when it opens it
        obj = _try(g.__getitem__, name)
        if obj is None:
            continue
        addr = _try(_address, obj)
        if addr is not None:
            if addr in state["seen"]:
                continue
            state["seen"].add(addr)
        kind = type(obj).__name__
        if kind == "Group":
            _walk_group(obj, state, depth + 1)
        elif kind == "Dataset":
            _try(_walk_dataset, obj, state)
        else:
            _walk_attrs(obj)


def _address(obj: Any) -> Any:
    import h5py

    info = h5py.h5o.get_info(obj.id)
    return getattr(info, "token", None) or getattr(info, "addr", None)


def _walk_attrs(obj: Any) -> None:
    attrs = obj.attrs
    for name in _try(list, attrs) or []:
        _try(attrs.get_id, name)
        _try(attrs.__getitem__, name)


def _walk_dataset(ds: Any, state: dict) -> None:
    _walk_attrs(ds)
    _try(lambda: (ds.dtype, ds.shape, ds.chunks, ds.compression, ds.fillvalue))
    _try(lambda: ds.id.get_create_plist().get_nfilters())
    _try(ds.id.get_storage_size)
    if _try(lambda: ds.chunks) is not None:
        _try(_walk_chunks, ds)
    shape, dtype = _try(lambda: ds.shape), _try(lambda: ds.dtype)
    if not shape or dtype is None or 0 in shape:  # scalar, null or empty
        _try(ds.__getitem__, ())
        return
    if dtype.kind == "O" or dtype.itemsize == 0:  # variable length: data in a heap
        for i in range(int(shape[0])):
            got = _try(ds.__getitem__, i)
            state["budget"] -= max(64, _nbytes(got))
            if state["budget"] < 0:
                break
        _try(ds.__getitem__, -1)
        return
    nbytes = math.prod(int(n) for n in shape) * dtype.itemsize
    if nbytes <= state["budget"]:
        state["budget"] -= nbytes
        _try(ds.__getitem__, ())
        return
    _try(ds.__getitem__, (0,) * len(shape))  # one chunk decoded, at each end
    _try(ds.__getitem__, tuple(int(n) - 1 for n in shape))


def _nbytes(value: Any) -> int:
    """Bytes of one variable-length element as h5py returns it (array, bytes, str)."""
    n = getattr(value, "nbytes", None)
    if isinstance(value, (bytes, str)):
        return len(value)
    if getattr(value, "dtype", None) is not None and value.dtype.kind == "O":
        return sum(_nbytes(v) for v in value.flat)
    return int(n) if n is not None else 64


def _walk_chunks(ds: Any) -> None:
    dsid = ds.id
    if hasattr(dsid, "chunk_iter"):
        count = [0]

        def visit(_info: Any) -> Any:
            count[0] += 1
            return None if count[0] < MAX_CHUNKS else 1

        dsid.chunk_iter(visit)
        return
    for i in range(min(int(dsid.get_num_chunks()), MAX_CHUNKS)):
        dsid.get_chunk_info(i)
