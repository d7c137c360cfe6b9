"""Checks of the GPU side: the CUDA driver through cuda-python, NVML through pynvml.

Neither is needed to record (the kernel side works without a GPU), so their absence is reported
as `unavailable`, never as a reason not to record.
"""

from __future__ import annotations

from uvmtrace.doctor.result import Check, missing, ok, unavailable
from uvmtrace.tracer.hostinfo import gpu_info, is_unified

GIB = 1 << 30


def check_cuda() -> list[Check]:
    info = gpu_info()
    if not info.get("available"):
        why = str(info.get("why", "unknown"))
        if "not installed" in why:
            return [missing("CUDA driver", why, "pip install cuda-python")]
        if "DynamicLibNotFound" in why or "libcuda" in why or "driver library" in why:
            why = "no NVIDIA driver (libcuda.so.1 not found)"
        return [
            unavailable("CUDA driver", why, "needed only for the CUDA side; kernel tracing works")
        ]
    version = int(info["driver_version"])
    devices = info.get("devices", [])
    checks = [
        ok(
            "CUDA driver",
            f"CUDA {version // 1000}.{version % 1000 // 10} driver API, {len(devices)} device(s)",
        )
    ]
    for d in devices:
        checks.append(
            ok(
                f"GPU {d['index']}",
                f"{d['name']}, {d['total_bytes'] / GIB:.1f} GiB; unified memory: "
                f"{'yes' if is_unified(d) else 'no'} (integrated {d['integrated']}, "
                f"pageable memory access {d['pageable_memory_access']}, "
                f"host-native atomics {d['host_native_atomics']})",
            )
        )
    return checks


def check_nvml() -> Check:
    name = "NVML"
    try:
        import pynvml
    except ImportError:
        return missing(name, "pynvml is not installed", "pip install nvidia-ml-py")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return unavailable(name, f"nvmlInit: {exc}", "needed only for GPU memory samples")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        memory = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            try:
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                memory.append(f"GPU {i}: {mem.free / GIB:.1f} of {mem.total / GIB:.1f} GiB free")
            except pynvml.NVMLError_NotSupported:
                # Integrated GPUs (GB10) answer this: their memory is the system's.
                memory.append(f"GPU {i}: memory Not Supported (read /proc/meminfo instead)")
    finally:
        pynvml.nvmlShutdown()
    return ok(name, f"driver {driver}; " + ("; ".join(memory) or "no devices"))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
