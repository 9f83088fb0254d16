#!/usr/bin/env bash
# Install rawsigma with the LOWEST declared versions of its I/O dependencies in a fresh
# venv and run the codec/container tests there; then a core install (no extras) runs
# `rawsigma compress/decompress` to .rsnc and .tif. Too slow for every CI run (two
# venvs, ~5-10 min); run it when a floor in pyproject.toml changes and record the
# result in benchmarks/RESULTS.md ("Issue 13 — interop").
#
#   bash benchmarks/check_floors.sh [workdir]      (default workdir: /tmp/rawsigma-floors)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/rawsigma-floors}"
py="${PYTHON:-python3}"
rm -rf "$work"
mkdir -p "$work"

# the floors declared in pyproject.toml (numpy itself is left to the resolver: pinning
# numpy 1.26 makes pip backtrack through the history of every numeric dependency)
grep -oE '"(tifffile|imagecodecs|h5py|zarr|numcodecs)>=[0-9.]+"' "$repo/pyproject.toml" \
    | tr -d '"' | sed 's/>=/==/' > "$work/floors.txt"
cat "$work/floors.txt"

echo "== floors venv"
"$py" -m venv "$work/floors"
"$work/floors/bin/pip" install -q -c "$work/floors.txt" "$repo[scale]" pytest xmlschema
"$work/floors/bin/pip" list 2>/dev/null | grep -iE '^(numpy|tifffile|imagecodecs|h5py|zarr|numcodecs) '
(cd "$repo" && "$work/floors/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_noisecodec_containers.py tests/test_containers_interop.py)

echo "== core venv (pip install . without extras)"
"$py" -m venv "$work/core"
"$work/core/bin/pip" install -q "$repo"
if "$work/core/bin/python" -c "import numcodecs" 2>/dev/null; then
    echo "note: numcodecs is present in the core venv (pulled in by a core dependency)"
fi
"$work/core/bin/python" - "$work" <<'PY'
import sys
from pathlib import Path

import numpy as np
import tifffile
from rawsigma.analysis.noisecodec.synthetic import reference_frame

d = Path(sys.argv[1])
frame, lam, cam = reference_frame((256, 256), seed=1)
tifffile.imwrite(d / "raw.tif", np.stack([frame, frame]))
cam.true_profile().save(d / "cam.h5")
PY
for ext in rsnc tif h5; do
    "$work/core/bin/rawsigma" compress "$work/raw.tif" --profile "$work/cam.h5" --out "$work/c.$ext"
    "$work/core/bin/rawsigma" decompress "$work/c.$ext" --out "$work/d_$ext.tif"
done
# .zarr without the scale extra: one clear line, no traceback
if "$work/core/bin/python" -c "import zarr" 2>/dev/null; then
    echo "note: zarr is present in the core venv"
else
    set +e
    msg="$("$work/core/bin/rawsigma" compress "$work/raw.tif" --profile "$work/cam.h5" \
        --out "$work/c.zarr" 2>&1)"
    set -e
    echo "$msg"
    if ! grep -q "scale' extra" <<<"$msg" || grep -q Traceback <<<"$msg"; then
        echo "core venv: .zarr without the scale extra is not one clear error" >&2
        exit 1
    fi
fi
echo "floors: OK"
