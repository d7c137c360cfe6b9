"""Shared fixtures and the capability gates: skip without root/BPF/Docker/GPU, except that in CI
(CI=true) a missing BPF or Docker is a failure, not a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(ok: bool, why: str, *, ci_must_have: bool) -> None:
    if ok:
        return
    if IN_CI and ci_must_have:
        pytest.fail(f"CI=true but {why}", pytrace=False)
    pytest.skip(why)


def has_bpf() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        from uvmtrace.host.bcc import import_bcc
    except ImportError:
        return False
    try:
        import_bcc()
    except Exception:
        return False
    from uvmtrace.host import tracefs

    return tracefs.mount_point() is not None  # where the probes look


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    r = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    return r.returncode == 0


@pytest.fixture
def need_root() -> None:
    _need(os.geteuid() == 0, "needs root", ci_must_have=True)


@pytest.fixture
def need_bpf() -> None:
    _need(has_bpf(), "needs root, BCC and tracefs (run scripts/setup-host)", ci_must_have=True)


@pytest.fixture
def need_docker() -> None:
    _need(docker_ok(), "needs a running Docker daemon", ci_must_have=True)


@pytest.fixture
def need_gpu() -> None:
    _need(
        shutil.which("nvidia-smi") is not None and os.path.exists("/dev/nvidiactl"),
        "needs an NVIDIA GPU (GPU checks run on the device machine; see docs/validation.md)",
        ci_must_have=False,
    )


STAND_IN = Path(__file__).parent / "stand_in_driver"


@pytest.fixture(scope="session")
def shim() -> Path:
    from uvmtrace.shim.build import build_shim

    return build_shim()


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding the stand-in libcuda.so.1, libnvidia-ml.so.1 and driver_user."""
    out = tmp_path_factory.mktemp("stand_in")
    from uvmtrace.shim.build import find_compiler

    cc = [find_compiler(), "-O1", "-fPIC"]
    subprocess.run(
        [*cc, "-shared", "-o", out / "libcuda.so.1", STAND_IN / "fake_cuda.c", "-lpthread"],
        check=True,
    )
    subprocess.run(
        [*cc, "-shared", "-o", out / "libnvidia-ml.so.1", STAND_IN / "fake_nvml.c"], check=True
    )
    subprocess.run(
        [
            *cc,
            "-o",
            out / "driver_user",
            STAND_IN / "driver_user.c",
            f"-L{out}",
            "-l:libcuda.so.1",
            "-l:libnvidia-ml.so.1",
            f"-Wl,-rpath,{out}",
            "-ldl",
            "-lpthread",
        ],
        check=True,
    )
    return out
