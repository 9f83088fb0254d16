"""Refuse damaged TIFF files instead of reading what tifffile could salvage.

tifffile reads a truncated or damaged file without raising: it logs ``invalid page
offset`` and hands back the pages before the damage (a 48-frame stack read as 1 frame
when its shaped series no longer fits), or ``Missing data are zeroed`` for an OME or
Micro-Manager series with pages missing. Inside `tiff_intact`, such a log record turns
into one `InputFileError`; tifffile's other warnings (metadata quirks) are dropped
instead of printed as extra lines.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from typing import TYPE_CHECKING

from .errors import InputFileError

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator

__all__ = ["tiff_intact"]

#: tifffile's log messages that mean pixels are missing or misplaced (metadata quirks,
#: e.g. an unreadable Micro-Manager display-settings block, are not damage).
DAMAGE = re.compile(
    r"invalid page offset|invalid offset to (first )?page|invalid next page"
    r"|corrupted tag list|failed to reshape|failed to read \d+ bytes"
    r"|Missing data are zeroed|series is missing|incompletely written|circular reference"
    r"|incorrect StripOffsets|missing data offset tag|missing (data )?ByteCounts tag"
    r"|does not match page shape"
)


class _Catch(logging.Handler):
    """Collect the damage messages tifffile logs on one thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.damage: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        msg = record.getMessage()
        if DAMAGE.search(msg):
            self.damage.append(re.sub(r"^<[^>]*>\s*", "", msg))


@contextlib.contextmanager
def tiff_intact(path: str | os.PathLike[str]) -> Iterator[None]:
    """Run a tifffile read; raise if tifffile logged damage meanwhile.

    Raises
    ------
    InputFileError
        ``PATH: damaged or truncated TIFF (first message)``.
    """
    log = logging.getLogger("tifffile")
    catch = _Catch()
    log.addHandler(catch)
    try:
        yield
    finally:
        log.removeHandler(catch)
    if catch.damage:
        more = f"; {len(catch.damage) - 1} more" if len(catch.damage) > 1 else ""
        raise InputFileError(
            f"{path}: damaged or truncated TIFF ({catch.damage[0]}{more}); tifffile would "
            "return only part of it: use an intact copy"
        )
