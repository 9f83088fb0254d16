"""Calibrate the simulated camera through Micro-Manager, from Python.

The simulated rig (a pymmcore-plus ``UniMMCore`` with rawsigma's simulated sCMOS
camera and light source) runs a short flat-field sweep; the per-pixel gain it
measures is compared with the gain the simulated camera was built with.

Run: ``python examples/calibrate_simulated_rig.py [profile.h5]`` (about 10 s).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from rawsigma.acquire import SweepPlan, SweepRunner, open_core, sim_device
from rawsigma.calib import load_profile


def main(out: Path) -> None:
    # a 48×48 sensor keeps the example fast; a real rig: open_core("rig.cfg")
    core = open_core(properties={"Camera.SensorWidth": 48, "Camera.SensorHeight": 48})
    plan = SweepPlan(dark_frames=60, n_levels=6, frames_per_level=60, seed=1)
    runner = SweepRunner(core, plan)
    runner.levelFinished.connect(lambda i, d: print(f"  level {i} done"))
    profile = runner.run(out=out)

    truth = sim_device(core, "Camera").active_model  # what the simulation was built with
    good = profile.good
    error = np.median(np.abs(profile.gain[good] / truth.gain[good] - 1))
    print(
        f"profile {profile.profile_id}: {profile.shape[1]}×{profile.shape[0]} px, "
        f"global gain {profile.gain_global:.3f} ADU/e⁻"
    )
    print(f"per-pixel gain vs the simulated camera's: median error {100 * error:.1f} %")
    print(f"written to {out}; reloaded shape {load_profile(out).shape}")
    assert error < 0.1, "the measured gain should be within 10 % of the truth"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "sim_profile.h5")
