"""A KV-cache sizer that behaves like an inference server at start-up (the demo's workload).

What it does, in TensorRT-LLM's order: load the weights file (mmap or read), copy it to "device"
memory, allocate a stand-in for the activations, ask one memory signal how much is free, then
allocate `fraction x (free - reserve)` as the KV cache, in whole blocks, and touch it.

Device memory: with `--device cuda`, cuMemAlloc + cuMemcpyHtoD through cuda-python; with
`--device cpu`, anonymous host memory, touched, which is what allocations are on a unified-memory
GPU (GB10, GH200): every byte lowers the host's MemFree.

Signals (`--signal`), as the frameworks read them:
  sysinfo  libc sysinfo(): freeram x mem_unit (TensorRT-LLM's UVM path). Looked up in the global
           symbol scope, where an LD_PRELOAD library comes first, as a PLT call would be.
  cuda     cuMemGetInfo (TensorRT-LLM otherwise, vLLM and SGLang through torch).
  nvml     nvmlDeviceGetMemoryInfo (through libnvidia-ml directly).
  meminfo  MemFree of /proc/meminfo.

`--reserve` is subtracted from the signal before the fraction applies: it stands for the rest of
a large device, so that on a shared 24 GiB machine the KV size still follows the signal while
staying small. `--max-kv` is only a safety cap; when it, not the signal, decides the KV size the
run is not informative, and the result line says so (`"kv_decided_by": "cap"`).

The last line of output is machine-readable: `uvmtrace-kvsizer {json}` with every byte count.
Only the standard library is needed (cuda-python for `--device cuda` / `--signal cuda`), so the
file also runs as a plain script with a Python bind-mounted into a container.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import json
import mmap
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

RESULT_PREFIX = "uvmtrace-kvsizer "
GIB = 1 << 30
MIB = 1 << 20
PAGE = mmap.PAGESIZE
CHUNK = 64 * MIB  # read/copy granularity: bounded staging memory, few syscalls
TOKENS_PER_BLOCK = 32  # TensorRT-LLM's default tokens_per_block
DEFAULT_BYTES_PER_TOKEN = 128 * 1024  # fp16 K+V of a Llama-3-8B-like model (32 x 8 x 128 x 2 x 2)
DEFAULT_MAX_KV = 4 * GIB
DEFAULT_ACTIVATION = 128 * MIB
SIGNALS = ("sysinfo", "cuda", "nvml", "meminfo")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


class KvSizerError(Exception):
    """A problem the user can act on: printed as one line, exit code 2."""


def parse_size(text: str) -> int:
    """`1G`, `256M`, `1.5GiB`, `4096` -> bytes (binary units: 1G = 1 GiB)."""
    m = _SIZE.match(str(text))
    if not m:
        raise KvSizerError(f"not a size: {text!r} (examples: 4096, 256M, 1G, 1.5GiB)")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * (1 << (10 * " kmgt".index(unit or " "))))


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except KvSizerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- memory signals ---------------------------------------------------------------------------


class _SysinfoStruct(ctypes.Structure):
    # struct sysinfo of <linux/sysinfo.h>, with room to spare after the last field.
    _fields_ = [
        ("uptime", ctypes.c_long),
        ("loads", ctypes.c_ulong * 3),
        ("totalram", ctypes.c_ulong),
        ("freeram", ctypes.c_ulong),
        ("sharedram", ctypes.c_ulong),
        ("bufferram", ctypes.c_ulong),
        ("totalswap", ctypes.c_ulong),
        ("freeswap", ctypes.c_ulong),
        ("procs", ctypes.c_ushort),
        ("pad", ctypes.c_ushort),
        ("totalhigh", ctypes.c_ulong),
        ("freehigh", ctypes.c_ulong),
        ("mem_unit", ctypes.c_uint),
        ("_f", ctypes.c_char * 64),
    ]


def sysinfo_free() -> tuple[int, int]:
    """(freeram, totalram) x mem_unit from libc sysinfo(), resolved like a PLT call."""
    # CDLL(None) is the global scope (dlopen(NULL)): an LD_PRELOAD'ed sysinfo wins there,
    # whereas CDLL("libc.so.6") would bind to libc's own symbol and bypass the shim.
    libc = ctypes.CDLL(None, use_errno=True)
    info = _SysinfoStruct()
    if libc.sysinfo(ctypes.byref(info)) != 0:
        raise KvSizerError(f"sysinfo() failed: {os.strerror(ctypes.get_errno())}")
    unit = info.mem_unit or 1
    return info.freeram * unit, info.totalram * unit


def meminfo_free() -> tuple[int, int]:
    """(MemFree, MemTotal) of /proc/meminfo, in bytes."""
    values: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("MemFree", "MemTotal"):
                values[key] = int(rest.split()[0]) * 1024
    return values["MemFree"], values["MemTotal"]


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]  # fmt: skip


def nvml_free(index: int = 0) -> tuple[int, int]:
    """(free, total) of nvmlDeviceGetMemoryInfo for one device."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        raise KvSizerError(
            "--signal nvml: libnvidia-ml.so.1 not found (no NVIDIA driver)"
        ) from None
    rc = nvml.nvmlInit_v2()
    if rc != 0:
        raise KvSizerError(f"--signal nvml: nvmlInit failed (NVML error {rc})")
    handle = ctypes.c_void_p()
    rc = nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle))
    if rc != 0:
        raise KvSizerError(f"--signal nvml: no device {index} (NVML error {rc})")
    mem = _NvmlMemory()
    rc = nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem))
    if rc != 0:
        # 3 = NVML_ERROR_NOT_SUPPORTED: what integrated GPUs (GB10) answer for memory.
        raise KvSizerError(f"--signal nvml: nvmlDeviceGetMemoryInfo failed (NVML error {rc})")
    return mem.free, mem.total


# ---- devices: where weights, activations and KV cache live -----------------------------------


class HostDevice:
    """Anonymous host memory: how a unified-memory GPU's allocations look to the kernel."""

    name = "cpu"

    def __init__(self) -> None:
        self._maps: list[mmap.mmap] = []

    def alloc(self, size: int) -> int:
        if size <= 0:
            return 0
        try:
            m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except OSError as exc:
            raise KvSizerError(f"cannot allocate {size:,} bytes: {exc.strerror}") from None
        self._maps.append(m)
        return len(self._maps) - 1

    def buffer(self, handle: int) -> mmap.mmap:
        return self._maps[handle]

    def copy_in(self, handle: int, offset: int, src: memoryview) -> None:
        self._maps[handle][offset : offset + len(src)] = src

    def touch(self, handle: int, size: int) -> None:
        # Writing every page makes the kernel back it: the charge happens here, not at mmap().
        if size <= 0:
            return
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._maps[handle]))
        ctypes.memset(base, 0, size)

    def close(self) -> None:
        for m in self._maps:
            with contextlib.suppress(BufferError):
                m.close()
        self._maps.clear()


class CudaDevice:
    """Device memory through the CUDA driver API (cuda-python)."""

    name = "cuda"

    def __init__(self, ordinal: int = 0) -> None:
        try:
            from cuda.bindings import driver  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cuda as driver  # type: ignore[no-redef]  # older cuda-python
            except ImportError:
                raise KvSizerError(
                    "--device cuda needs cuda-python (pip install cuda-python)"
                ) from None
        self.cu = driver
        try:
            ret = driver.cuInit(0)
        except Exception as exc:  # cuda-python raises when libcuda itself cannot be loaded
            raise KvSizerError(f"no CUDA driver: {str(exc).splitlines()[0][:160]}") from None
        self._check(ret, "cuInit")
        self.dev = self._check(driver.cuDeviceGet(ordinal), "cuDeviceGet")
        self.ctx = self._check(
            driver.cuDevicePrimaryCtxRetain(self.dev), "cuDevicePrimaryCtxRetain"
        )
        self._check(driver.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")
        self._ptrs: list[Any] = []
        self._staging: Any = None

    def _check(self, ret: Any, what: str) -> Any:
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            _, name = self.cu.cuGetErrorName(err)
            label = name.decode() if isinstance(name, bytes) else str(err)
            raise KvSizerError(f"{what} failed: {label}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else tuple(rest)

    def mem_get_info(self) -> tuple[int, int]:
        free, total = self._check(self.cu.cuMemGetInfo(), "cuMemGetInfo")
        return int(free), int(total)

    def alloc(self, size: int) -> int:
        if size <= 0:
            return -1
        self._ptrs.append(self._check(self.cu.cuMemAlloc(size), f"cuMemAlloc({size:,})"))
        return len(self._ptrs) - 1

    def copy_in(self, handle: int, offset: int, src: memoryview) -> None:
        n = len(src)
        if self._staging is None or len(self._staging) < n:
            self._staging = (ctypes.c_char * max(n, CHUNK))()
        ctypes.memmove(self._staging, (ctypes.c_char * n).from_buffer_copy(src), n)
        dst = int(self._ptrs[handle]) + offset
        self._check(self.cu.cuMemcpyHtoD(dst, ctypes.addressof(self._staging), n), "cuMemcpyHtoD")

    def touch(self, handle: int, size: int) -> None:
        if size > 0:
            self._check(self.cu.cuMemsetD8(self._ptrs[handle], 0, size), "cuMemsetD8")
            self._check(self.cu.cuCtxSynchronize(), "cuCtxSynchronize")

    def close(self) -> None:
        for ptr in self._ptrs:
            self.cu.cuMemFree(ptr)
        self._ptrs.clear()
        self.cu.cuDevicePrimaryCtxRelease(self.dev)


def cuda_driver_present() -> bool:
    return ctypes.util.find_library("cuda") is not None or os.path.exists("/dev/nvidiactl")


# ---- the run ----------------------------------------------------------------------------------


@dataclass
class Config:
    weights: str
    weights_size: int | None = None
    load: str = "read"
    signal: str = "sysinfo"
    device: str = "auto"
    fraction: float = 0.9
    reserve: int = 0
    max_kv: int = DEFAULT_MAX_KV
    activation: int = DEFAULT_ACTIVATION
    bytes_per_token: int = DEFAULT_BYTES_PER_TOKEN
    hold_s: float = 0.0


@dataclass
class Result:
    """What the workload did, in bytes: the last line of its output, as JSON."""

    pid: int
    device: str
    signal: str
    load: str
    weights_path: str
    weights_created: bool
    weights_bytes: int
    activation_bytes: int
    free_bytes: int  # what the signal answered
    total_bytes: int
    reserve_bytes: int
    fraction: float
    available_bytes: int  # free - reserve: what the fraction applies to
    kv_bytes: int
    kv_tokens: int
    kv_blocks: int
    block_bytes: int
    kv_by_signal_bytes: int  # what the signal alone would have given (before the cap)
    max_kv_bytes: int
    kv_decided_by: str  # "signal" or "cap"
    query_ts_ns: int  # CLOCK_MONOTONIC of the sizing query, to align with a recording
    kv_alloc_ts_ns: int
    rss_anon_bytes: int | None  # the kernel's RssAnon of this process after everything is touched
    timings_s: dict[str, float] = field(default_factory=dict)


def _log(msg: str) -> None:
    # TensorRT-LLM's C++ logger format (cpp/include/tensorrt_llm/common/logger.h: "[TensorRT-LLM]"
    # prefix + "[INFO] " level tag); flushed so `uvmtrace record` sees each line as it happens.
    print(f"[TensorRT-LLM][INFO] {msg}", flush=True)


def _warn(msg: str) -> None:
    print(f"[TensorRT-LLM][WARNING] {msg}", flush=True)


def ensure_weights(path: str, size: int | None) -> tuple[int, bool]:
    """(size of the weights file, whether we created it). Created atomically, never followed."""
    try:
        st = os.stat(path)
        return st.st_size, False
    except FileNotFoundError:
        pass
    if size is None:
        raise KvSizerError(f"{path}: no such file (give --weights-size to create one)")
    tmp = f"{path}.{os.getpid()}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o644)
    except OSError as exc:
        raise KvSizerError(f"cannot create {tmp}: {exc.strerror}") from None
    try:
        # Incompressible-looking content, cheap to make: one random block, stamped per chunk.
        block = bytearray(os.urandom(min(CHUNK, max(size, 1))))
        written = 0
        while written < size:
            block[:8] = written.to_bytes(8, "little")
            n = min(len(block), size - written)
            written += os.write(fd, memoryview(block)[:n])
        os.fsync(fd)  # clean pages: the page cache it leaves behind is reclaimable, like a download
    except OSError as exc:
        os.unlink(tmp)
        raise KvSizerError(f"cannot write {tmp}: {exc.strerror}") from None
    finally:
        os.close(fd)
    os.rename(tmp, path)
    return size, True


def load_weights(path: str, load: str, size: int, sink: Callable[[int, memoryview], None]) -> int:
    """Feed the weights file to `sink(offset, piece)` chunk by chunk, through read() or mmap.

    Each piece is released right after the sink returns, so the mapping can be closed at once.
    """
    done = 0
    with open(path, "rb", buffering=0) as f:
        if load == "mmap":
            if size == 0:
                return 0
            with mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as m, memoryview(m) as view:
                for off in range(0, size, CHUNK):
                    with view[off : off + CHUNK] as piece:
                        sink(off, piece)
                        done += len(piece)
        else:
            buf = bytearray(CHUNK)
            with memoryview(buf) as view:
                while n := f.readinto(buf):
                    with view[:n] as piece:
                        sink(done, piece)
                    done += n
    return done


def _rss_anon() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _open_device(cfg: Config) -> HostDevice | CudaDevice:
    device = cfg.device
    if device == "auto":
        device = "cuda" if cfg.signal in ("cuda", "nvml") or cuda_driver_present() else "cpu"
        if device == "cuda" and not cuda_driver_present():
            raise KvSizerError(f"--signal {cfg.signal} needs a CUDA driver; none found")
    return CudaDevice() if device == "cuda" else HostDevice()


def _query(cfg: Config, dev: HostDevice | CudaDevice) -> tuple[int, int]:
    if cfg.signal == "sysinfo":
        return sysinfo_free()
    if cfg.signal == "meminfo":
        return meminfo_free()
    if cfg.signal == "nvml":
        return nvml_free()
    if not isinstance(dev, CudaDevice):
        raise KvSizerError("--signal cuda needs --device cuda")
    return dev.mem_get_info()


def size_kv(cfg: Config, free: int) -> tuple[int, int, int, int, str]:
    """(kv_bytes, blocks, kv_by_signal, available, decided_by), TensorRT-LLM style.

    kvCacheManager.cpp: the primary pool gets `free x fraction` bytes, in whole blocks.
    """
    block = cfg.bytes_per_token * TOKENS_PER_BLOCK
    available = max(0, free - cfg.reserve)
    by_signal = int(available * cfg.fraction) // block * block
    cap = cfg.max_kv // block * block
    kv = min(by_signal, cap)
    decided = "cap" if cap < by_signal else "signal"
    return kv, kv // block, by_signal, available, decided


def run(cfg: Config, log: Callable[[str], None] = _log) -> Result:
    timings: dict[str, float] = {}
    t = time.monotonic()
    weights_bytes, created = ensure_weights(cfg.weights, cfg.weights_size)
    timings["create_weights"] = round(time.monotonic() - t, 3)
    dev = _open_device(cfg)
    try:
        t = time.monotonic()
        weights = dev.alloc(weights_bytes)
        offset = load_weights(
            cfg.weights,
            cfg.load,
            weights_bytes,
            lambda off, piece: dev.copy_in(weights, off, piece),
        )
        if offset != weights_bytes:
            raise KvSizerError(f"{cfg.weights}: read {offset:,} of {weights_bytes:,} bytes")
        timings["load_weights"] = round(time.monotonic() - t, 3)
        log(f"Loaded engine size: {weights_bytes // MIB} MiB")

        t = time.monotonic()
        act = dev.alloc(cfg.activation)
        dev.touch(act, cfg.activation)
        timings["activation"] = round(time.monotonic() - t, 3)
        act_mib = cfg.activation / MIB
        log(f"[MemUsageChange] Allocated {act_mib:.2f} MiB for execution context memory.")

        query_ts = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        free, total = _query(cfg, dev)
        kv, blocks, by_signal, available, decided = size_kv(cfg, free)
        log(
            "Memory usage when calculating max tokens in paged kv cache: "
            f"total: {total / GIB:.2f} GiB, available: {available / GIB:.2f} GiB"
        )
        log(f"Number of blocks in KV cache primary pool: {blocks}")
        if decided == "cap":
            _warn(
                f"KV cache capped by --max-kv at {kv / GIB:.2f} GiB (the signal gave "
                f"{by_signal / GIB:.2f} GiB): the cap, not the signal, decided its size"
            )
        if available == 0:
            _warn(f"free memory {free:,} B is below the reserve {cfg.reserve:,} B: no KV cache")

        t = time.monotonic()
        kv_ts = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        kv_handle = dev.alloc(kv)
        dev.touch(kv_handle, kv)
        timings["kv_cache"] = round(time.monotonic() - t, 3)
        tokens = blocks * TOKENS_PER_BLOCK
        log(f"Number of tokens per block: {TOKENS_PER_BLOCK}.")
        what = f"for max tokens in paged KV cache ({tokens})."
        log(f"[MemUsageChange] Allocated {kv / GIB:.2f} GiB {what}")
        rss = _rss_anon()
        if cfg.hold_s > 0:
            time.sleep(cfg.hold_s)  # lets a sampler see the steady state
    finally:
        dev.close()
    return Result(
        pid=os.getpid(),
        device=dev.name,
        signal=cfg.signal,
        load=cfg.load,
        weights_path=os.path.abspath(cfg.weights),
        weights_created=created,
        weights_bytes=weights_bytes,
        activation_bytes=cfg.activation,
        free_bytes=free,
        total_bytes=total,
        reserve_bytes=cfg.reserve,
        fraction=cfg.fraction,
        available_bytes=available,
        kv_bytes=kv,
        kv_tokens=tokens,
        kv_blocks=blocks,
        block_bytes=cfg.bytes_per_token * TOKENS_PER_BLOCK,
        kv_by_signal_bytes=by_signal,
        max_kv_bytes=cfg.max_kv,
        kv_decided_by=decided,
        query_ts_ns=query_ts,
        kv_alloc_ts_ns=kv_ts,
        rss_anon_bytes=rss,
        timings_s=timings,
    )


def result_line(result: Result) -> str:
    return RESULT_PREFIX + json.dumps(asdict(result), sort_keys=True)


def parse_result(lines: list[str] | str) -> Result | None:
    """The workload's own account, from its output (the last result line wins)."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    for line in reversed(lines):
        idx = line.find(RESULT_PREFIX)
        if idx >= 0:
            return Result(**json.loads(line[idx + len(RESULT_PREFIX) :]))
    return None


def build_parser(prog: str = "python -m uvmtrace.example.kvsizer") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Size a KV cache from a free-memory signal, as inference servers do.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The last output line is `uvmtrace-kvsizer {json}` with every byte count.\n\n"
        "Example:\n"
        f"  {prog} --weights /tmp/w.bin --weights-size 1G --signal sysinfo --fraction 0.1",
    )
    p.add_argument("--weights", required=True, help="weights file to load")
    p.add_argument("--weights-size", type=_size_arg, help="create the weights file if absent")
    p.add_argument("--load", choices=("read", "mmap"), default="read")
    p.add_argument("--signal", choices=SIGNALS, default="sysinfo", help="free-memory signal")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="cuda: cuMemAlloc; cpu: anonymous memory (unified)")  # fmt: skip
    p.add_argument("--fraction", type=float, default=0.9, help="of free memory for the KV cache")
    p.add_argument("--reserve", type=_size_arg, default=0,
                   help="bytes subtracted from the signal before the fraction")  # fmt: skip
    p.add_argument("--max-kv", type=_size_arg, default=DEFAULT_MAX_KV,
                   help="safety cap on the KV cache; reported when it decides")  # fmt: skip
    p.add_argument("--activation", type=_size_arg, default=DEFAULT_ACTIVATION)
    p.add_argument("--bytes-per-token", type=_size_arg, default=DEFAULT_BYTES_PER_TOKEN)
    p.add_argument("--hold", type=float, default=0.0, help="seconds to keep everything allocated")
    return p


def config_from_args(argv: list[str] | None, prog: str | None = None) -> Config:
    ns = build_parser(prog or "python -m uvmtrace.example.kvsizer").parse_args(argv)
    if not 0.0 < ns.fraction <= 1.0:
        raise KvSizerError(f"--fraction must be in (0, 1], not {ns.fraction}")
    if ns.bytes_per_token <= 0:
        raise KvSizerError("--bytes-per-token must be positive")
    return Config(
        weights=ns.weights,
        weights_size=ns.weights_size,
        load=ns.load,
        signal=ns.signal,
        device=ns.device,
        fraction=ns.fraction,
        reserve=ns.reserve,
        max_kv=ns.max_kv,
        activation=ns.activation,
        bytes_per_token=ns.bytes_per_token,
        hold_s=max(0.0, ns.hold),
    )


def main(argv: list[str] | None = None) -> int:
    try:
        result = run(config_from_args(argv))
    except KvSizerError as exc:
        print(f"kvsizer: error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(result_line(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
