"""The one reader of the machine's memory and the three places that size work by it."""

from __future__ import annotations

import sys

import pytest
from rawsigma import _sysmem


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/meminfo on Linux only")
def test_available_memory_is_meminfo_and_below_physical() -> None:
    with open("/proc/meminfo") as fh:
        line = next(ln for ln in fh if ln.startswith("MemAvailable:"))
    expect = int(line.split()[1]) * 1024
    got = _sysmem.meminfo_available()
    physical = _sysmem.physical_memory()
    assert got is not None and physical is not None
    assert abs(got - expect) < 256 * 2**20  # read a moment apart
    assert 0 < got <= physical


def test_fallbacks_where_memory_is_unknown(monkeypatch) -> None:
    """Each caller keeps its own fallback when /proc/meminfo is missing."""
    from rawsigma.analysis.scoring import per_image, tomo_chunked
    from rawsigma.cli import score_volume_cmd

    monkeypatch.setattr(_sysmem, "meminfo_available", lambda: None)
    monkeypatch.setattr(_sysmem, "physical_memory", lambda: 8 * 2**30)
    assert tomo_chunked.available_memory() == 4 * 2**30
    assert score_volume_cmd.available_memory() == 8 * 2**30
    assert per_image.kept_bank_budget() == min(per_image.KEPT_BANK_BYTES, 2**30)
    monkeypatch.setattr(_sysmem, "physical_memory", lambda: None)
    assert score_volume_cmd.available_memory() == 0
    assert per_image.kept_bank_budget() == 0
    monkeypatch.setattr(_sysmem, "meminfo_available", lambda: 2 * 2**30)
    assert tomo_chunked.available_memory() == 2 * 2**30
    assert score_volume_cmd.available_memory() == 2 * 2**30
    assert per_image.kept_bank_budget() == 2**29  # a quarter
