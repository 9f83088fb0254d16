"""The scripts of examples/ run as a user runs them, and say what they measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# script -> a line it must print (each script also asserts its numbers against truth)
CASES = {
    "calibrate_simulated_rig.py": "per-pixel gain vs the simulated camera's",
    "synthesize_replicas.py": "variance over replicas / model variance",
    "score_image.py": "objects in the raw segmentation",
    "compress_to_zarr.py": "decoded - raw, in units of the pixel's noise",
}


def test_every_example_is_run() -> None:
    assert {p.name for p in EXAMPLES.glob("[!_]*.py")} == set(CASES)


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert CASES[script] in proc.stdout, proc.stdout
