"""Bench acquisition: Micro-Manager cores, the simulated rig, sweeps and stacks.

The public names below are imported lazily on first use, so ``import rawsigma.acquire``
does not import pymmcore-plus and the pure-numpy `SensorModel` never pulls it in.

Examples
--------
>>> from rawsigma.acquire import SensorModel
>>> model = SensorModel.preset("scmos", shape=(32, 32), seed=0)
>>> model.shape
(32, 32)
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "AcquisitionRunner": "protocols",
    "CorePlus": "protocols",
    "FrameWriter": "framesave",
    "MDASweep": "mda",
    "MMCore": "protocols",
    "MomentsHandler": "mda",
    "SensorModel": "sensor_model",
    "SimCamera": "devices",
    "SimLightSource": "sim_light",
    "StackPlan": "plans",
    "StackResult": "stack",
    "StackRunner": "stack",
    "SweepPlan": "plans",
    "SweepRunner": "sweep",
    "open_core": "core",
    "read_identity": "identity",
    "sim_device": "sim_light",
    "sweep_sequences": "mda",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
