"""Return codes by name: CUDA's from cuda-python, NVML's from pynvml, sysinfo's from errno."""

from __future__ import annotations

import errno
from functools import cache


@cache
def cuda_result_name(code: int) -> str:
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver  # cuda-python 11/12 layout
        except ImportError:
            return str(code)
    try:
        return str(driver.CUresult(code).name)
    except (ValueError, AttributeError):
        return str(code)


@cache
def _nvml_names() -> dict[int, str]:
    try:
        import pynvml
    except ImportError:
        return {}
    names = {}
    for attr in dir(pynvml):
        if attr == "NVML_SUCCESS" or attr.startswith("NVML_ERROR_"):
            value = getattr(pynvml, attr)
            if isinstance(value, int):
                names.setdefault(value, attr)
    return names


def nvml_result_name(code: int) -> str:
    return _nvml_names().get(code, str(code))


def sysinfo_result_name(result: int, err: int) -> str:
    if result == 0:
        return "OK"
    return errno.errorcode.get(err, str(err))
