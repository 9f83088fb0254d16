"""Memory of the machine, for choosing in-memory or chunked work and cache sizes."""

from __future__ import annotations

import os


def meminfo_available() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of ``/proc/meminfo``).

    None where the system has no such file or line.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def physical_memory() -> int | None:
    """Bytes of physical memory (``sysconf``), or None where it is unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None
