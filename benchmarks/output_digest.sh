#!/bin/bash
# Hashes of what the CLI writes: the demo's results/objects/maps, a simulated
# calibration, an estimated profile and the codec's bytes (rsnc/tif/h5).
# usage: benchmarks/output_digest.sh OUTDIR   (run from anywhere; needs `rawsigma` on PATH)
# Data: ../shared/data beside the repository (RAWSIGMA_DATA overrides).
# Expected values: benchmarks/RESULTS.md, "Issue 12: outputs identical across the refactor".
set -e
REPO=$(cd "$(dirname "$0")/.." && pwd)
D=${RAWSIGMA_DATA:-$REPO/../shared/data}
D=$(cd "$D" && pwd)
OUT=${1:?usage: output_digest.sh OUTDIR}; rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"
export RAWSIGMA_DATA=$D
rawsigma demo --out demo --seed 0 > demo.log 2>&1
P=demo/profile.h5; [ -f $P ] || P=$(find demo -name '*.h5' ! -name maps.h5 | head -1)
python - <<'PY' > frame.npy.log
import numpy as np, tifffile
import os
a = tifffile.imread(os.path.join(os.environ["RAWSIGMA_DATA"], "bbbc039_u2os_hoechst_3fields.tif"))
np.save("frames.npy", np.asarray(a[:2]).astype(np.uint16))
PY
rawsigma calibrate --levels 4 --frames 8 --dark 8 --seed 3 -o cal.h5 > cal.log 2>&1
rawsigma profile estimate frames.npy -o est.h5 > est.log 2>&1
PROF=est.h5
echo "profile: $PROF"
for ext in rsnc tif h5; do rawsigma compress frames.npy -p "$PROF" -o c.$ext > /dev/null 2>&1; done
rawsigma compress frames.npy -p "$PROF" --step 1 --dither -o d.rsnc > /dev/null 2>&1
python -c "
import numpy as np
from rawsigma.calib import CameraProfile
shp = CameraProfile.load('cal.h5').gain.shape
a = np.load('frames.npy'); np.save('crop.npy', np.ascontiguousarray(a[:, :shp[0], :shp[1]]))
" ; rawsigma compress crop.npy -p cal.h5 -o p.rsnc --maps pixel > p.log 2>&1 || echo 'pixel compress failed (shape mismatch ok)'

python - <<'PY'
import hashlib, json, pathlib, h5py, numpy as np, csv
def h(b): return hashlib.sha256(b).hexdigest()[:16]
for f in ["c.rsnc", "d.rsnc", "p.rsnc"]:
    print(f, h(pathlib.Path(f).read_bytes()))
import tifffile, rawsigma.imread, rawsigma.analysis.noisecodec
for f in ["cal.h5", "est.h5"]:
    with h5py.File(f) as hf:
        acc = []
        hf.visititems(lambda k, d: acc.append((k, h(np.asarray(d).tobytes()))) if isinstance(d, h5py.Dataset) else None)
    print(f, h(repr(acc).encode()))
for f in ["c.tif", "c.h5"]:
    print(f, h(pathlib.Path(f).read_bytes()))
for name in ["demo/real", "demo/simulated"]:
    r = json.loads(pathlib.Path(name, "results.json").read_text())
    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if not any(s in k for s in ("time", "elapsed", "seconds", "created", "version", "path", "duration", "date", "timing"))}
        if isinstance(o, list): return [strip(v) for v in o]
        return o
    print(name, "results", h(json.dumps(strip(r), sort_keys=True).encode()))
    print(name, "objects", h(b"".join(pathlib.Path(name, "objects.csv").read_bytes().splitlines(True)[1:])))
    with h5py.File(pathlib.Path(name, "maps.h5")) as f:
        acc = []
        f.visititems(lambda k, d: acc.append((k, h(np.asarray(d).tobytes()))) if isinstance(d, h5py.Dataset) else None)
    print(name, "maps", h(repr(acc).encode()))
PY
