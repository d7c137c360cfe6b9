#!/usr/bin/env bash
# The whole stack on a GPU host that has no BCC and no package registry (the device machine:
# Ubuntu 24.04 image, kernel 6.18, root, no polars): kernel probes + shim, recorded together.
#
# Here (Debian 12, with apt):  bash scripts/gpu/fullstack.sh --download DEB_DIR
#   fetches Debian 12's BCC and the 6.1 kernel headers as .deb files (~54 MB), nothing installed.
# There (repo root, as root):  OUT=/tmp/out bash scripts/gpu/fullstack.sh DEB_DIR
#   1. unpacks the .debs with `dpkg -x` into a private root (nothing of the system is replaced),
#      puts its libraries and BCC's Python module on LD_LIBRARY_PATH / PYTHONPATH, links the 6.1
#      headers as /lib/modules/$(uname -r)/build when the host has none (tracepoint programs take
#      their layout from tracefs, so older headers do), mounts tracefs;
#   2. `uvmtrace doctor`, without polars (the recording side must not need it);
#   3. `uvmtrace record` of real GPU workloads: scripts/gpu/fullstack_case.py (PyTorch pinned +
#      default allocator, cuda-python cuMemHostAlloc / cuMemAllocManaged touched from the CPU /
#      cuMemHostRegister / cuMemAlloc) aggregated and with --raw, scripts/gpu/jax_case.py, and
#      the demo's sizer (example/kvsizer.py --device cuda --signal cuda);
#   4. a pyarrow summary of each recording (no polars there), everything into $OUT (few files).
# Every step has a timeout; a failing step is logged and the next one runs.
set -u
PKGS="libbpfcc python3-bpfcc libclang-cpp14 libllvm14 libz3-4 libbpf1 \
linux-headers-6.1.0-57-amd64 linux-headers-6.1.0-57-common linux-kbuild-6.1"

if [ "${1:-}" = --download ]; then
  mkdir -p "${2:?usage: $0 --download DEB_DIR}" && cd "$2" && exec apt-get download $PKGS
fi
DEBS=$(cd "${1:?usage: OUT=dir $0 DEB_DIR}" && pwd)
OUT=${OUT:?set OUT}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-python3}
export PYTHONWARNINGS=ignore::SyntaxWarning  # BCC 0.26's regexes, under Python 3.12
W=$(mktemp -d /tmp/uvmtrace-fullstack.XXXXXX)
ROOT=${BCC_ROOT:-/opt/uvmtrace-bcc}
LOG="$OUT/fullstack.log"
exec > >(tee "$LOG") 2>&1
say() { echo "== $(date -u +%T) $*"; }

say "host"
uname -r; $PY --version; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
grep -E '^(MemTotal|MemFree):' /proc/meminfo; stat -fc 'cgroup fs: %T' /sys/fs/cgroup
$PY -c 'import polars' 2>&1 | tail -1  # expected: no polars here

say "1. BCC from $(ls "$DEBS"/*.deb | wc -l) packages into $ROOT"
mkdir -p "$ROOT"
for deb in "$DEBS"/*.deb; do dpkg -x "$deb" "$ROOT" || echo "dpkg -x failed: $deb"; done
export LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# uvmtrace is not installed there: its component folders become the `uvmtrace` namespace
mkdir -p "$W/ns/uvmtrace"
for c in tracer probes shim analysis recording; do ln -s "$REPO/$c" "$W/ns/uvmtrace/$c"; done
export PYTHONPATH="$W/ns:$ROOT/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}"
ldd "$ROOT/usr/lib/x86_64-linux-gnu/libbcc.so.0" | grep 'not found' || echo "libbcc: all libraries found"
MOD=/lib/modules/$(uname -r)
if [ ! -e "$MOD/build/include" ]; then
  mkdir -p "$MOD"
  ln -sfn "$(ls -d "$ROOT"/usr/src/linux-headers-*-amd64 | head -1)" "$MOD/build"
  ln -sfn "$(ls -d "$ROOT"/usr/src/linux-headers-*-common | head -1)" "$MOD/source"
fi
ls -l "$MOD/"
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
$PY -c 'import bcc; print("bcc", bcc.__version__, bcc.__file__)'

say "2. doctor (no polars)"
timeout 180 $PY -m uvmtrace.cli doctor --json >"$OUT/doctor.json"; echo "doctor rc=$?"
timeout 180 $PY -m uvmtrace.cli doctor | tail -4

summary() {  # summary FILE.parquet: streams, events, metadata that matters (pyarrow only)
  $PY - "$1" <<'EOF'
import collections, json, sys
import pyarrow.parquet as pq
path = sys.argv[1]
t = pq.read_table(path, columns=["stream", "event", "item", "bytes", "count"])
meta = json.loads(pq.read_metadata(path).metadata[b"uvmtrace"])
print(path, t.num_rows, "rows; lost", meta.get("lost"), "; not_traced", meta.get("not_traced"))
print("probes", {k: (v or {}).get("attached") for k, v in (meta.get("probes") or {}).items()})
c = collections.Counter(zip(t["stream"].to_pylist(), t["event"].to_pylist()))
for (s, e), n in sorted(c.items()):
    print(f"  {s:7} {e:28} {n}")
import pyarrow as pa
import pyarrow.compute as pc
ch = t.filter(pc.equal(t["event"], "memcg_charge"))
ch = ch.set_column(ch.schema.get_field_index("item"), "item", pc.cast(ch["item"], pa.string()))
for r in ch.group_by("item").aggregate([("bytes", "sum")]).to_pylist():
    print(f"  charged {r['item']:24} {r['bytes_sum'] / 2**20:10.1f} MiB")
EOF
}

rec() {  # rec NAME [record options] -- CMD...: one recording, its log and summary
  local name=$1; shift
  say "3. record $name"
  local t0=$SECONDS
  timeout 240 $PY -m uvmtrace.cli record -q --as-root -o "$W/$name.parquet" "$@" \
    >"$W/$name.out" 2>&1
  echo "record $name rc=$? in $((SECONDS - t0)) s"; tail -5 "$W/$name.out"
  [ -f "$W/$name.parquet" ] && summary "$W/$name.parquet"
}

say "3. the PyTorch + cuda-python case without uvmtrace (its own numbers, for comparison)"
timeout 120 $PY "$REPO/scripts/gpu/fullstack_case.py" "$W/fullstack-plain.json"; echo "rc=$?"
rec fullstack -- $PY "$REPO/scripts/gpu/fullstack_case.py" "$W/fullstack.json"
rec fullstack-raw --raw -- $PY "$REPO/scripts/gpu/fullstack_case.py" "$W/fullstack-raw.json"
rec jax -- $PY "$REPO/scripts/gpu/jax_case.py" "$W/jax.json"
timeout 120 $PY "$REPO/example/kvsizer.py" --weights "$W/weights.bin" --weights-size 1G \
  --device cpu --signal meminfo --max-kv 4M >/dev/null 2>&1  # creates the weights file
# warm, then cold (the weights' page cache dropped): 1 GiB more host page cache charged in the
# cold run, the same cuMemGetInfo free: the discrete GPU is the negative control
cat "$W/weights.bin" >/dev/null
rec sizer -- $PY "$REPO/example/kvsizer.py" --weights "$W/weights.bin" --signal cuda \
  --device cuda --fraction 0.9 --max-kv 200G --hold 1
$PY -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$W/weights.bin"
rec sizer-cold -- $PY "$REPO/example/kvsizer.py" --weights "$W/weights.bin" --signal cuda \
  --device cuda --fraction 0.9 --max-kv 200G --hold 1
ls -la "$W"

say "4. results"
rm -f "$W/weights.bin"
tar -C "$W" -czf "$OUT/recordings.tar.gz" --exclude=ns --exclude='*.spool' \
  --exclude=fullstack-raw.parquet .
tar -C "$W" -czf "$OUT/raw.tar.gz" fullstack-raw.parquet
cp "$W/fullstack.parquet" "$W/fullstack.json" "$OUT/" 2>/dev/null
ls -la "$OUT"
sleep 1  # let tee write the end of the log
