"""Sparse training annotations derived from instance labels."""

from __future__ import annotations

import numpy as np
from rawsigma.analysis.segmentation.classifier import training_labels_from_instances

__all__ = ["TRAINING_RING", "training_labels"]

#: bright halo next to objects (a 2–5 px ring leaves flat background unseen, and the
#: forest then calls noise blobs there foreground).
TRAINING_RING = (2.0, 20.0)


def training_labels(instances: np.ndarray) -> np.ndarray:
    """Sparse annotations from instances: eroded cores (2) and a wide background ring (1)."""
    return training_labels_from_instances(instances, ring=TRAINING_RING)
