"""The demo's workload sizes its KV cache from the signal it is told to read, like TensorRT-LLM."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from uvmtrace.example.kvsizer import (
    GIB,
    MIB,
    TOKENS_PER_BLOCK,
    Config,
    KvSizerError,
    parse_result,
    parse_size,
    size_kv,
)


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0]) * 1024
    return out


def kvsizer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uvmtrace.example.kvsizer", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def reserve_leaving(headroom: int) -> int:
    """A reserve that leaves `headroom` bytes of today's MemFree to size the KV cache from."""
    return max(0, meminfo()["MemFree"] - headroom)


def test_sizes_parse_in_binary_units() -> None:
    assert parse_size("4096") == 4096
    assert parse_size("256M") == 256 * MIB
    assert parse_size("1G") == parse_size("1GiB") == GIB
    assert parse_size("1.5g") == 3 * GIB // 2
    with pytest.raises(KvSizerError):
        parse_size("lots")


def test_kv_is_the_fraction_of_free_minus_reserve_in_whole_blocks() -> None:
    cfg = Config(weights="w", fraction=0.9, reserve=GIB, max_kv=8 * GIB)
    block = cfg.bytes_per_token * TOKENS_PER_BLOCK
    kv, blocks, by_signal, available, decided = size_kv(cfg, 3 * GIB + 12345)
    assert available == 2 * GIB + 12345
    assert kv == by_signal == int(0.9 * available) // block * block == blocks * block
    assert decided == "signal"
    kv, _, by_signal, _, decided = size_kv(Config(weights="w", max_kv=64 * MIB), 3 * GIB)
    assert (kv, decided) == (64 * MIB, "cap") and by_signal > kv


def test_with_meminfo_the_kv_cache_follows_memfree(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    before = meminfo()["MemFree"]
    r = kvsizer(
        "--weights", str(weights), "--weights-size", "32M", "--signal", "meminfo",
        "--reserve", str(reserve_leaving(768 * MIB)), "--max-kv", "4G",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = parse_result(r.stdout)
    assert res is not None
    assert res.weights_created and weights.stat().st_size == res.weights_bytes == 32 * MIB
    assert res.kv_decided_by == "signal"
    # The KV cache is exactly fraction x (free - reserve), rounded down to whole blocks.
    expected = int(0.9 * (res.free_bytes - res.reserve_bytes)) // res.block_bytes * res.block_bytes
    assert res.kv_bytes == expected > 0
    # The free value it read is the kernel's MemFree of that moment (others share this machine).
    assert abs(res.free_bytes - before) < GIB
    # Everything it says it allocated was really backed: the kernel's RssAnon covers it all.
    touched = res.weights_bytes + res.activation_bytes + res.kv_bytes
    assert res.rss_anon_bytes is not None
    assert touched <= res.rss_anon_bytes <= touched + 160 * MIB
    # TensorRT-LLM's own line states the same size.
    kv_line = f"Allocated {res.kv_bytes / GIB:.2f} GiB for max tokens in paged KV cache"
    assert f"[TensorRT-LLM][INFO] [MemUsageChange] {kv_line} ({res.kv_tokens})." in r.stdout


def test_with_sysinfo_free_is_freeram_and_total_is_memtotal(tmp_path: Path) -> None:
    r = kvsizer(
        "--weights", str(tmp_path / "w.bin"), "--weights-size", "16M", "--load", "mmap",
        "--signal", "sysinfo", "--reserve", str(reserve_leaving(512 * MIB)),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = parse_result(r.stdout)
    assert res is not None and res.load == "mmap"
    assert res.total_bytes == meminfo()["MemTotal"]  # sysinfo totalram x mem_unit
    assert abs(res.free_bytes - meminfo()["MemFree"]) < GIB


def test_a_cap_that_decides_is_reported_as_such(tmp_path: Path) -> None:
    r = kvsizer(
        "--weights", str(tmp_path / "w.bin"), "--weights-size", "8M",
        "--signal", "meminfo", "--max-kv", "8M",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = parse_result(r.stdout)
    assert res is not None
    assert res.kv_decided_by == "cap" and res.kv_bytes == 8 * MIB < res.kv_by_signal_bytes
    assert "the cap, not the signal, decided its size" in r.stdout


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_sysinfo_is_resolved_where_an_ld_preload_library_comes_first(tmp_path: Path) -> None:
    # A preloaded sysinfo() that claims 3 GiB free: the workload must size from it, which
    # proves the shim (an LD_PRELOAD library) sees and can time this call.
    src = tmp_path / "fake.c"
    src.write_text(
        "#include <string.h>\n#include <sys/sysinfo.h>\n"
        "int sysinfo(struct sysinfo *i) { memset(i, 0, sizeof *i);"
        " i->totalram = 8UL << 30; i->freeram = 3UL << 30; i->mem_unit = 1; return 0; }\n"
    )
    lib = tmp_path / "libfake.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    env = {**os.environ, "LD_PRELOAD": str(lib)}
    r = kvsizer(
        "--weights", str(tmp_path / "w.bin"), "--weights-size", "4M", "--signal", "sysinfo",
        "--reserve", "2G", env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = parse_result(r.stdout)
    assert res is not None
    assert (res.free_bytes, res.total_bytes) == (3 * GIB, 8 * GIB)
    assert res.kv_bytes == int(0.9 * GIB) // res.block_bytes * res.block_bytes


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    absent = tmp_path / "absent.bin"
    r = kvsizer("--weights", str(absent))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"kvsizer: error: {absent}: no such file (give --weights-size to create one)"
    ]
    r = kvsizer("--weights", str(tmp_path / "w.bin"), "--weights-size", "1M", "--fraction", "1.5")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--fraction must be in (0, 1]" in r.stderr
    r = kvsizer("--weights", str(tmp_path / "w.bin"), "--weights-size", "1M", "--signal", "cuda",
                "--device", "cpu")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="this host has an NVIDIA driver")
def test_cuda_without_a_driver_is_one_line(tmp_path: Path) -> None:
    r = kvsizer("--weights", str(tmp_path / "w.bin"), "--weights-size", "1M", "--device", "cuda")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("kvsizer: error: no CUDA driver")
