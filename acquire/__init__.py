"""Bench acquisition: Micro-Manager cores, the simulated rig, sweeps and stacks.

Modules (import them directly; this package imports nothing eagerly, so the pure
numpy `sensor_model` never pulls in pymmcore-plus):

- `sensor_model`: `SensorModel`, per-pixel camera physics with known truth.
- `devices`: `SimCamera`, `SimLightSource` (pymmcore-plus unicore devices), `sim_device`
  (the light source and the device registry are defined in `sim_light`).
- `core`: `open_core` (simulated rig, real ``.cfg``, pycromanager bridge).
- `identity`: `read_identity` (camera model, serial, mode, ROI, bit depth).
- `plans`: `SweepPlan`, `StackPlan`.
- `stream`: `stream_frames`, `accumulate_frames`, `Controls` (sequence-acquisition loop).
- `sweep`: `SweepRunner` (flat-field photon-transfer sweep, resumable).
- `light_control`: `LightControl` (shutter, control value, auto-range), `level_stability`.
- `stack`: `StackRunner`, `StackResult` (N-frame repeat stack, Fig. 1a convergence).
- `framesave`: `FrameWriter` (OME-TIFF/HDF5 frames + CSV table).
"""
