"""The cross-layer contracts of `rawsigma.acquire.protocols` hold for the real objects."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from rawsigma.acquire.protocols import AcquisitionRunner, CorePlus, MMCore

REPO = Path(__file__).resolve().parents[1]


def _core_calls() -> dict[str, set[str]]:
    """Attributes used on ``core`` / ``self.core`` in acquire/*.py, by attribute name."""
    used: dict[str, set[str]] = {}
    for path in sorted((REPO / "acquire").glob("*.py")):
        if path.name == "protocols.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            is_core = (isinstance(owner, ast.Name) and owner.id == "core") or (
                isinstance(owner, ast.Attribute) and owner.attr == "core"
            )
            if is_core:
                used.setdefault(node.attr, set()).add(path.name)
    return used


def _members(protocol: type) -> set[str]:
    return {
        n for c in protocol.__mro__ if c is not object for n in vars(c) if not n.startswith("_")
    }


def test_every_core_call_of_the_acquisition_code_is_in_the_protocol() -> None:
    used = _core_calls()
    assert {"getCameraDevice", "popNextImage", "setExposure"} <= set(used)  # the scan works
    missing = {n: sorted(f) for n, f in used.items() if n not in _members(CorePlus)}
    assert not missing, f"core methods called but not in acquire/protocols.py: {missing}"
    # pymmcore-plus's extras only where a CorePlus is required
    plus_only = _members(CorePlus) - _members(MMCore)
    assert all(used.get(n, set()) <= {"mda.py", "sim_light.py"} for n in plus_only)


def test_the_simulated_core_satisfies_the_protocols() -> None:
    from rawsigma.acquire.core import close_core, open_core

    core = open_core(None)
    try:
        assert isinstance(core, MMCore)
        assert isinstance(core, CorePlus)
    finally:
        close_core(core)


def test_the_runners_satisfy_the_runner_protocol(tmp_path: Path) -> None:
    from rawsigma.acquire import SweepRunner
    from rawsigma.acquire.core import close_core, open_core
    from rawsigma.acquire.plans import StackPlan, SweepPlan
    from rawsigma.acquire.stack import StackRunner

    core = open_core(None)
    try:
        sweep = SweepRunner(core, SweepPlan(dark_frames=2, n_levels=2, frames_per_level=2))
        stack = StackRunner(core, StackPlan(n_frames=2))
        assert isinstance(sweep, AcquisitionRunner)
        assert isinstance(stack, AcquisitionRunner)
    finally:
        close_core(core)


@pytest.mark.parametrize("missing", ["pause", "finished"])
def test_an_object_without_a_member_is_not_a_runner(missing: str) -> None:
    members = {n: (lambda *a, **k: None) for n in _members(AcquisitionRunner)}
    del members[missing]
    assert not isinstance(type("Partial", (), members)(), AcquisitionRunner)
    full = {**members, missing: lambda *a, **k: None}
    assert isinstance(type("Full", (), full)(), AcquisitionRunner)
