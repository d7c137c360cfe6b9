#!/usr/bin/env bash
# Every GPU measurement in one call on the device machine (H100, Python 3.12, torch, cuda-python,
# no polars/BCC/Docker): run from the repository root with OUT set. Wheels that the box lacks
# (polars, rich) travel in .gpu-wheels/ (`pip download` them for cp312 manylinux x86_64 first).
#   OUT=/tmp/out bash scripts/gpu/all.sh
set -u
OUT=${OUT:?set OUT}
REPO=$(pwd)
W=$(mktemp -d /tmp/uvmtrace-gpu.XXXXXX)
python3 -m pip install -q --no-deps --target "$W/site" .gpu-wheels/*.whl 2>&1 | tail -1
mkdir -p "$W/ns/uvmtrace"
for c in tracer probes shim analysis recording; do ln -s "$REPO/$c" "$W/ns/uvmtrace/$c"; done
export PYTHONPATH="$W/ns:$W/site:$REPO"
echo "== doctor"; python3 -m uvmtrace.cli doctor --json >"$OUT/doctor.json"; echo "rc=$?"
echo "== shim build"; LIB=$(python3 -m uvmtrace.cli shim build | head -1); echo "$LIB"
echo "== bench: shim per call + launch loop (H100 driver)"
python3 -m bench --gpu --only shim --reps 7 -o "$OUT/bench_gpu_shim.json"
echo "== bench: torch training step"
python3 bench/gpu_torch_bench.py --shim "$LIB" --repeats 5 --json "$OUT/bench_gpu_torch.json"
echo "== demo on the GPU"
mkdir -p "$W/demo"
OUT="$W/demo" timeout 420 bash scripts/gpu/demo_gpu.sh 2G 3G
tail -n +1 "$W/demo/summary.tsv"
cp "$W/demo"/*.parquet "$OUT/" 2>/dev/null
tar -C "$W" -czf "$OUT/demo.tar.gz" demo
ls -la "$OUT"
