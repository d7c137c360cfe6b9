#!/usr/bin/env bash
# The demo's KV sizer on a discrete GPU (H100/H200): a negative control for the unified-memory case.
#
# Runs example/kvsizer.py with --device cuda natively (own cgroup v2 child, no limit) and inside a
# memory-limited cgroup v2 child (memory.max), each with the weights' page cache warm or cold:
#   --signal cuda     cuMemGetInfo: device memory; host page cache should not move it
#   --signal sysinfo  freeram: host memory; the cold read of the weights should lower it
#   --signal nvml     nvmlDeviceGetMemoryInfo, once, natively
# then, if the shim builds here, the cuda runs again under `uvmtrace record` (shim + samplers;
# no BCC on this machine, so no kernel probes: the recording says so).
#
# Writes into $OUT: <run>.out (the workload's output, last line = its JSON result),
# <run>.memstat.tsv (the run cgroup's memory.current/anon/file/kernel/shmem every 0.2 s),
# <run>.stat.{before,after} (memory.stat), summary.tsv (one line per run), env.txt, and
# recordings (*.parquet) when `uvmtrace record` works. Bounded: every step has a timeout.
#
# Usage (repo root, as root): OUT=/tmp/out bash scripts/gpu/demo_gpu.sh [WEIGHTS_SIZE] [LIMIT]
set -u
OUT=${OUT:-/tmp/uvmtrace-demo-gpu-out}
SIZE=${1:-2G}
LIMIT=${2:-3G}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/uvmtrace-demo-gpu.XXXXXX)
CG=${CGROUP_ROOT:-/sys/fs/cgroup}  # (a fake tree for dry runs of this script)
mkdir -p "$OUT"

# uvmtrace is not installed there: expose the component folders as the `uvmtrace` namespace.
mkdir -p "$WORK/ns/uvmtrace"
for c in tracer probes shim analysis recording; do ln -s "$REPO/$c" "$WORK/ns/uvmtrace/$c"; done
export PYTHONPATH="$WORK/ns${PYTHONPATH:+:$PYTHONPATH}"
KV="$REPO/example/kvsizer.py"
W="$WORK/weights.bin"

{
  echo "date: $(date -u +%FT%TZ)"; uname -r; $PY --version
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1
  grep -E '^(MemTotal|MemFree|MemAvailable|Cached):' /proc/meminfo
  echo "cgroup: $(stat -fc %T $CG)"
  $PY -c 'import cuda.bindings as c; print("cuda-bindings", c.__version__)' 2>&1
} >"$OUT/env.txt" 2>&1

echo +memory >"$CG/cgroup.subtree_control" 2>>"$OUT/env.txt"
mkcg() {  # mkcg NAME LIMIT: a fresh child of the root with memory.max = LIMIT
  rmdir "$CG/$1" 2>/dev/null
  mkdir "$CG/$1" && echo "$2" >"$CG/$1/memory.max"
}

timeout 120 $PY "$KV" --weights "$W" --weights-size "$SIZE" --device cpu --signal meminfo \
  --max-kv 4M >"$OUT/create-weights.out" 2>&1  # creates the file (and leaves it cached)

cache() {  # cache warm|cold: the weights' page cache before a run
  if [ "$1" = warm ]; then cat "$W" >/dev/null
  else $PY -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$W"
  fi
}

sampler() {  # sampler CGROUP FILE: memory.current and a few memory.stat keys every 0.2 s
  echo -e "t_s\tcurrent\tanon\tfile\tkernel\tshmem" >"$2"
  local t0; t0=$(date +%s.%N)
  while :; do
    local cur; cur=$(cat "$CG/$1/memory.current" 2>/dev/null) || break
    awk -v now="$(date +%s.%N)" -v t0="$t0" -v c="$cur" '
      $1=="anon"{a=$2} $1=="file"{f=$2} $1=="kernel"{k=$2} $1=="shmem"{s=$2}
      END{printf "%.2f\t%s\t%s\t%s\t%s\t%s\n", now - t0, c, a, f, k, s}' "$CG/$1/memory.stat" >>"$2"
    sleep 0.2
  done
}

echo -e "run\tmemory.max\tcache\tsignal\texit\tfree_bytes\ttotal_bytes\tkv_bytes\tkv_decided_by\tpeak_bytes\tfile_delta\tanon_delta" \
  >"$OUT/summary.tsv"

run() {  # run NAME LIMIT warm|cold SIGNAL [kvsizer args...], in a fresh cgroup of its own
  local name=$1 limit=$2 state=$3 signal=$4; shift 4
  local cg="uvmtrace-$name"
  mkcg "$cg" "$limit" || { echo "cannot create cgroup $cg" >>"$OUT/env.txt"; return; }
  cache "$state"
  cat "$CG/$cg/memory.stat" >"$OUT/$name.stat.before"
  sampler "$cg" "$OUT/$name.memstat.tsv" & local sp=$!
  timeout 300 sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' _ "$CG/$cg" \
    $PY "$KV" --weights "$W" --signal "$signal" --device cuda --hold 1 "$@" >"$OUT/$name.out" 2>&1
  local rc=$?
  kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null
  cat "$CG/$cg/memory.stat" >"$OUT/$name.stat.after"
  local peak; peak=$(cat "$CG/$cg/memory.peak" 2>/dev/null || echo NA)
  local delta
  delta=$(awk 'NR==FNR{b[$1]=$2; next} {d[$1]=$2-b[$1]} END{printf "%s\t%s", d["file"], d["anon"]}' \
    "$OUT/$name.stat.before" "$OUT/$name.stat.after")
  $PY - "$OUT/$name.out" "$name" "$limit" "$state" "$signal" "$rc" "$peak" "$delta" \
    >>"$OUT/summary.tsv" <<'EOF'
import json, sys
path, name, limit, state, signal, rc, peak, delta = sys.argv[1:]
res = {}
for line in open(path, errors="replace"):
    if line.startswith("uvmtrace-kvsizer "):
        res = json.loads(line[len("uvmtrace-kvsizer "):])
cols = [name, limit, state, signal, rc] + [str(res.get(k, "NA")) for k in
        ("free_bytes", "total_bytes", "kv_bytes", "kv_decided_by")] + [peak, delta]
print("\t".join(cols))
EOF
}

# Discrete GPU: the cuda signal sizes from device memory; cap far above, so the signal decides.
run native-cuda-warm  max      warm cuda --fraction 0.9 --max-kv 200G
run native-cuda-cold  max      cold cuda --fraction 0.9 --max-kv 200G
run limited-cuda-cold "$LIMIT" cold cuda --fraction 0.9 --max-kv 200G
run native-nvml-warm  max      warm nvml --fraction 0.9 --max-kv 200G
# The host signal: 0.05 x freeram stays far below the GPU's memory; cold reads lower freeram.
run native-sysinfo-warm  max      warm sysinfo --fraction 0.05 --max-kv 200G
run native-sysinfo-cold  max      cold sysinfo --fraction 0.05 --max-kv 200G
run limited-sysinfo-cold "$LIMIT" cold sysinfo --fraction 0.05 --max-kv 200G

# Under the shim, through `uvmtrace record` (its own cgroup natively; inside the limited one,
# --no-cgroup, since a v2 cgroup holding processes cannot delegate the controller further).
if timeout 120 $PY -c 'from uvmtrace.shim.build import build_shim; print(build_shim())' \
    >"$OUT/shim-build.txt" 2>&1; then
  cache warm
  timeout 300 $PY -m uvmtrace.cli record -q --as-root -o "$OUT/native-cuda.parquet" -- \
    $PY "$KV" --weights "$W" --signal cuda --device cuda --fraction 0.9 --max-kv 200G \
    >"$OUT/record-native-cuda.out" 2>&1
  cache cold
  mkcg uvmtrace-record-limited "$LIMIT"
  timeout 300 sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' _ "$CG/uvmtrace-record-limited" \
    $PY -m uvmtrace.cli record -q --as-root --no-cgroup -o "$OUT/limited-cuda.parquet" -- \
    $PY "$KV" --weights "$W" --signal cuda --device cuda --fraction 0.9 --max-kv 200G \
    >"$OUT/record-limited-cuda.out" 2>&1
  for f in native-cuda limited-cuda; do
    [ -f "$OUT/$f.parquet" ] && $PY - "$OUT/$f.parquet" >"$OUT/$f.events.txt" 2>&1 <<'EOF'
import collections, json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1], columns=["stream", "event", "bytes", "free_bytes", "item"])
meta = json.loads(pq.read_metadata(sys.argv[1]).metadata[b"uvmtrace"])
print("not_traced:", json.dumps(meta.get("not_traced")))
print("shim:", json.dumps(meta.get("shim")))
counts = collections.Counter(zip(t["stream"].to_pylist(), t["event"].to_pylist()))
for (s, e), n in sorted(counts.items()):
    print(f"{s}\t{e}\t{n}")
rows = t.to_pylist()
for r in rows:
    if r["stream"] in ("cuda", "log") and (r["bytes"] or r["free_bytes"]):
        print(r)
EOF
  done
fi

for d in "$CG"/uvmtrace-*/; do rmdir "$d" 2>/dev/null; done
rm -rf "$WORK"
column -t -s $'\t' "$OUT/summary.tsv"
