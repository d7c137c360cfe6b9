"""What a recording's metadata says about the host: kernel, GPU, driver, unified memory."""

from __future__ import annotations

import os
import platform
from typing import Any


def is_unified(device: dict[str, Any]) -> bool:
    """One memory pool for CPU and GPU: an integrated GPU (GB10) or a coherent link with
    host-native atomics (GH200's NVLink-C2C). Pageable memory access alone is not enough:
    x86 hosts with HMM report it for discrete GPUs too."""
    return device.get("integrated") == 1 or (
        device.get("pageable_memory_access") == 1 and device.get("host_native_atomics") == 1
    )


def gpu_info() -> dict[str, Any]:
    """CUDA driver facts through cuda-python; {"available": False, "why": ...} without a GPU."""
    try:
        from cuda.bindings import driver as cu
    except ImportError:
        try:
            from cuda import cuda as cu  # cuda-python < 12.6 layout
        except ImportError:
            return {"available": False, "why": "cuda-python is not installed"}
    try:
        (err,) = cu.cuInit(0)
    except Exception as exc:  # libcuda.so.1 missing raises from the loader
        return {"available": False, "why": f"no CUDA driver ({exc})"}
    if int(err) != 0:
        return {"available": False, "why": f"cuInit failed: {err.name}"}
    _, version = cu.cuDriverGetVersion()
    _, count = cu.cuDeviceGetCount()
    attr = cu.CUdevice_attribute
    devices = []
    for i in range(count):
        _, dev = cu.cuDeviceGet(i)
        _, name = cu.cuDeviceGetName(256, dev)
        _, total = cu.cuDeviceTotalMem(dev)

        def get(a: Any, dev: Any = dev) -> int:
            e, v = cu.cuDeviceGetAttribute(a, dev)
            return int(v) if int(e) == 0 else -1

        devices.append(
            {
                "index": i,
                "name": name.split(b"\0", 1)[0].decode(),
                "total_bytes": int(total),
                "integrated": get(attr.CU_DEVICE_ATTRIBUTE_INTEGRATED),
                "pageable_memory_access": get(attr.CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS),
                "host_native_atomics": get(attr.CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED),
            }
        )
    unified = any(is_unified(d) for d in devices)
    return {
        "available": True,
        "driver_version": int(version),
        "devices": devices,
        "unified_memory": unified,
    }


def host_info() -> dict[str, Any]:
    u = os.uname()
    return {
        "host": u.nodename,
        "kernel": u.release,
        "machine": u.machine,
        "python": platform.python_version(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "mem_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    }
