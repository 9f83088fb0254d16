"""Simulated scenes with known ground truth (instance labels), to image through the camera model.

- `nuclei2d`: elliptical nuclei plus bright beads, blurred by a Gaussian PSF.
- `organ_phantom3d`, `project_parallel`, `simulate_opt`: an organ with fluorescent plaques
  imaged by optical projection tomography through the camera model; `paper_opt` with the
  paper's camera (`orca_flash4`), angle density and photon budget.
- `nuclei3d`: ellipsoidal nuclei (touching pairs) in a dim tissue, anisotropic voxels.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "OPTAcquisition": "opt_organ",
    "OrganPhantom": "opt_organ",
    "nuclei2d": "scenes2d",
    "orca_flash4": "opt_organ",
    "organ_phantom3d": "opt_organ",
    "paper_opt": "opt_organ",
    "project_parallel": "opt_organ",
    "simulate_opt": "opt_organ",
    "nuclei3d": "scenes3d",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
