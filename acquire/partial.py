"""Resumable partial files of an interrupted sweep (HDF5, written atomically).

Layout (``kind = "rawsigma-sweep-partial"``, ``version = 1``)::

    attrs: kind, version, plan (JSON), identity (JSON), state (JSON: top,
           saturating control value, level control values, per-level stability)
    /dark                 accumulator state of the shared dark (PixelMoments.state_dict)
    /levels/000, 001, ... accumulator state of each completed level
    /level_darks/000, ... per-level darks (EMVA protocol), when the plan has them

Every checkpoint writes a new file next to the old one (copying the groups it
already had with HDF5's C-level copy) and renames it over the old one, so an
interruption at any moment leaves the previous checkpoint intact. A failed write
(disk full, permission denied) removes the temporary and raises `OutputError`;
callers hold `rawsigma.fileio.output_lock` on the partial file, so no second
writer can replace or delete it meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.errors import InputFileError, OutputError
from rawsigma.h5probe import check_hdf5

__all__ = ["PARTIAL_KIND", "PARTIAL_VERSION", "write_partial", "read_partial"]

PARTIAL_KIND = "rawsigma-sweep-partial"
PARTIAL_VERSION = 1


def _write_state(group: Any, state: dict[str, Any]) -> None:
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            group.create_dataset(k, data=v)
        else:
            group.attrs[k] = v


def _read_state(group: Any) -> dict[str, Any]:
    st: dict[str, Any] = {k: group[k][()] for k in group}
    for k, v in group.attrs.items():
        st[k] = v.item() if isinstance(v, np.generic) else v
    return st


def write_partial(
    path: str | os.PathLike,
    *,
    plan: dict[str, Any],
    identity: dict[str, Any],
    state: dict[str, Any],
    groups: dict[str, Any],
) -> None:
    """Write a checkpoint.

    Parameters
    ----------
    path : path-like
        Partial file (replaced atomically).
    plan, identity, state : dict
        JSON-able records.
    groups : dict of str to (dict or None)
        ``{"dark": state_dict, "levels/000": state_dict, ...}``; ``None`` means
        "copy this group from the existing partial file" (already saved).
    """
    import h5py

    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        old = h5py.File(p, "r") if any(v is None for v in groups.values()) else None
    except OSError as exc:
        raise OutputError(
            f"{p}: the previous checkpoint cannot be read ({exc.strerror or 'missing'}); "
            "was it removed while this sweep ran?"
        ) from None
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["kind"] = PARTIAL_KIND
            f.attrs["version"] = PARTIAL_VERSION
            f.attrs["plan"] = json.dumps(plan)
            f.attrs["identity"] = json.dumps(identity)
            f.attrs["state"] = json.dumps(state)
            for name, st in groups.items():
                if st is None:
                    if old is None or name not in old:
                        raise OutputError(f"{p}: group {name} missing from previous checkpoint")
                    f.require_group(os.path.dirname(name) or "/")
                    old.copy(old[name], f, name=name)
                else:
                    _write_state(f.require_group(name), st)
        os.replace(tmp, p)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            from rawsigma.fileio import describe_os_error

            kept = "the previous checkpoint is kept" if p.exists() else "no checkpoint written"
            raise OutputError(
                f"cannot write checkpoint: {describe_os_error(exc, p)}; {kept}"
            ) from exc
        raise
    finally:
        if old is not None:
            old.close()


def read_partial(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint: ``plan``, ``identity``, ``state`` and ``groups`` (state dicts).

    Raises
    ------
    InputFileError
        Missing, truncated or foreign file, or an unknown version.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: partial file not found")
    check_hdf5(p)
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("kind") != PARTIAL_KIND:
                raise InputFileError(f"{p}: not a rawsigma sweep partial file")
            version = int(f.attrs.get("version", -1))
            if version != PARTIAL_VERSION:
                raise InputFileError(
                    f"{p}: partial file version {version}, this rawsigma reads {PARTIAL_VERSION}"
                )
            out: dict[str, Any] = {
                "plan": json.loads(f.attrs["plan"]),
                "identity": json.loads(f.attrs["identity"]),
                "state": json.loads(f.attrs["state"]),
                "groups": {},
            }
            names: list[str] = []
            f.visit(lambda n: names.append(n) if "n" in f[n].attrs else None)
            for n in names:
                out["groups"][n] = _read_state(f[n])
            return out
    except InputFileError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputFileError(f"{p}: unreadable or truncated partial file ({exc})") from exc
