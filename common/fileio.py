"""Atomic file writes and provenance records shared by all subsystems."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputExistsError


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Return ``path`` as a Path, refusing to replace an existing file.

    Parameters
    ----------
    path : path-like
        Output file.
    force : bool
        Allow replacing an existing file.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``force`` is False.
    """
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(f"{p}: file exists; use --force to overwrite it")
    return p


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    An exception inside the block removes the temporary file and leaves any
    previous ``path`` untouched.

    Examples
    --------
    >>> with atomic_write("profile.h5", force=True) as tmp:  # doctest: +SKIP
    ...     write_hdf5(tmp)
    """
    p = check_output(path, force)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
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
