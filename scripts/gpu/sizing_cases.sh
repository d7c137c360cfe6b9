#!/usr/bin/env bash
# Real allocators and sizers under `uvmtrace shim run` (issue 13): every case in one call on the
# GPU machine, run from the repository root with OUT set:
#   OUT=/tmp/out bash scripts/gpu/sizing_cases.sh
# Each case writes its recording (<case>.parquet) and its own numbers (<case>.json) into one
# folder, tarred into $OUT/sizing_runs.tar.gz; tests/data/sizing/ keeps them for CPU CI.
# The box has no polars: `shim run` is called through its own command module (the CLI's other
# commands import the analysis), which is the same code `uvmtrace shim run` runs.
set -u
OUT=${OUT:?set OUT}
REPO=$(pwd)
W=$(mktemp -d /tmp/uvmtrace-sizing.XXXXXX)
mkdir -p "$W/ns/uvmtrace" "$W/runs"
for c in tracer probes shim analysis recording; do ln -s "$REPO/$c" "$W/ns/uvmtrace/$c"; done
export PYTHONPATH="$W/ns:$REPO" PYTHONUNBUFFERED=1
R="$W/runs"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c 'import torch, jax, cuda.bindings; print("torch", torch.__version__, "cuda", torch.version.cuda, "jax", jax.__version__, "cuda-bindings", cuda.bindings.__version__)'
} 2>&1 | tee "$R/versions.txt"

shim_run() {  # shim_run CASE [VAR=value ...] -- CMD ...: `uvmtrace shim run -o CASE.parquet -- CMD`
    local case=$1 vars=() t0
    shift
    while [ "$1" != "--" ]; do vars+=("$1"); shift; done
    shift
    echo "== $case ${vars[*]} $*"
    t0=$(date +%s.%N)
    env "${vars[@]}" timeout 150 python3 -c 'import sys
from uvmtrace.cli.commands.shim import command
sys.exit(command.main(sys.argv[1:], prog_name="uvmtrace shim", standalone_mode=False))' \
        run -o "$R/$case.parquet" -- "$@"
    echo "$case rc=$? $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f s", b-a}')"
}
G=scripts/gpu
shim_run torch_default -- python3 $G/torch_sizer.py "$R/torch_default.json"
shim_run torch_expandable PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True -- \
    python3 $G/torch_sizer.py "$R/torch_expandable.json"
shim_run torch_async PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync -- \
    python3 $G/torch_sizer.py "$R/torch_async.json"
shim_run vllm_style -- python3 $G/vllm_style_sizer.py "$R/vllm_style.json"
shim_run sglang_style -- python3 $G/sglang_style_sizer.py "$R/sglang_style.json"
shim_run jax_default -- python3 $G/jax_prealloc.py "$R/jax_default.json"
shim_run jax_fraction_05 XLA_PYTHON_CLIENT_MEM_FRACTION=.5 -- \
    python3 $G/jax_prealloc.py "$R/jax_fraction_05.json"
shim_run cuda_driver_vmm -- python3 $G/cuda_python_sizer.py driver "$R/cuda_driver_vmm.json"
shim_run cuda_runtime_pool -- python3 $G/cuda_python_sizer.py runtime "$R/cuda_runtime_pool.json"
ls -la "$R"
tar -C "$W" -czf "$OUT/sizing_runs.tar.gz" runs
