#!/bin/bash
# GPU check of the shim, run on the device machine from the repository root:
#   bash scripts/gpu/shim_gpu.sh        (OUT=<dir for results>)
# Builds the shim with gcc (same flags as shim/build.py: uvmtrace is not installed there),
# runs the PyTorch, cuda-python driver and cudart cases under it, then the benchmark. The raw
# shim files and each case's own numbers come back in $OUT and are checked here with
# scripts/gpu/verify_shim_gpu.py (no polars needed there).
set -u
OUT=${OUT:?set OUT}
W=$(mktemp -d)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch, cuda.bindings; print("torch", torch.__version__, "cuda", torch.version.cuda, "cuda-bindings", cuda.bindings.__version__)'
gcc --version | head -1
gcc -O2 -fPIC -shared -fvisibility=hidden -Wall -U_FORTIFY_SOURCE -o "$W/libuvmshim.so" \
    shim/uvmshim.c -Wl,--no-as-needed -l:libdl.so.2 -l:libpthread.so.0 -Wl,--as-needed || exit 1
mkdir -m 700 "$W/runs"
for case in torch_case driver_case runtime_case; do
    mkdir -m 700 "$W/runs/$case"
    LD_PRELOAD="$W/libuvmshim.so" UVMTRACE_SHIM_DIR="$W/runs/$case" \
        python3 "scripts/gpu/$case.py" "$W/runs/$case.json" 2>"$W/runs/$case.stderr"
    echo "$case rc=$? stderr_lines=$(wc -l <"$W/runs/$case.stderr")"
    tail -3 "$W/runs/$case.stderr"
done
# Same cases without the shim: results must not depend on it.
for case in driver_case; do
    python3 "scripts/gpu/$case.py" "$W/runs/$case.noshim.json" && echo "$case without shim ok"
done
tar -C "$W" -czf "$OUT/shim_runs.tar.gz" runs
taskset -c 3 python3 bench/shim_bench.py --shim "$W/libuvmshim.so" --repeats 11 --json "$OUT/shim_bench.json"
