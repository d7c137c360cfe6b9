"""Framework memory lines, in each framework's real output format, become `log` events.

The lines below are verbatim outputs of TensorRT-LLM, vLLM and SGLang (public logs), produced by
the format strings named in tracer/logs.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from uvmtrace.recording.schema import SCHEMA
from uvmtrace.tracer.kvsizer import parse_result
from uvmtrace.tracer.logs import GIB, MIB, LogScanner, recognize


def gib(x: float) -> int:
    return round(x * GIB)


# (line, event, framework, bytes, free_bytes, total_bytes, tokens)
REAL_LINES = [
    # TensorRT-LLM C++ runtime
    ("[TensorRT-LLM][INFO] [MemUsageChange] Allocated 26.91 GiB for max tokens in paged KV cache "
     "(220480).", "kv_cache", "tensorrt_llm", gib(26.91), None, None, 220480),
    ("[TensorRT-LLM][INFO] Memory usage when calculating max tokens in paged kv cache: total: "
     "79.10 GiB, available: 70.48 GiB", "memory_log", "tensorrt_llm", None, gib(70.48), gib(79.10),
     None),
    ("[TensorRT-LLM][INFO] Loaded engine size: 6695 MiB", "memory_log", "tensorrt_llm",
     6695 * MIB, None, None, None),
    ("[TensorRT-LLM][INFO] [MemUsageChange] Allocated 1134.01 MiB for execution context memory.",
     "memory_log", "tensorrt_llm", round(1134.01 * MIB), None, None, None),
    # TensorRT-LLM PyTorch backend
    ("[12/20/2025-04:21:51] [TRT-LLM] [I] Estimated max memory in KV cache : 5.95 GiB",
     "memory_log", "tensorrt_llm", gib(5.95), None, None, None),
    ("[12/20/2025-04:21:50] [TRT-LLM] [I] Memory used after loading model weights (inside torch) "
     "in memory usage profiling: 63.52 GiB", "memory_log", "tensorrt_llm", gib(63.52), None, None,
     None),
    ("[12/20/2025-04:21:50] [TRT-LLM] [I] Memory used after loading model weights (outside torch) "
     "in memory usage profiling: 49.78 GiB", "memory_log", "tensorrt_llm", gib(49.78), None, None,
     None),
    ("[12/20/2025-04:21:51] [TRT-LLM] [I] Memory dynamically allocated during inference (inside "
     "torch) in memory usage profiling: 0.85 GiB", "memory_log", "tensorrt_llm", gib(0.85), None,
     None, None),
    ("[12/20/2025-04:21:51] [TRT-LLM] [I] Memory used outside torch (e.g., NCCL and CUDA graphs) "
     "in memory usage profiling: 49.28 GiB", "memory_log", "tensorrt_llm", gib(49.28), None, None,
     None),
    ("[12/20/2025-04:21:51] [TRT-LLM] [I] Peak memory during memory usage profiling (torch + "
     "non-torch): 113.65 GiB, available KV cache memory when calculating max tokens: 5.95 GiB, "
     "fraction is set 0.8999999761581421, kv size is 73728. device total memory 119.70 GiB, , tmp "
     "kv_mem 0.56 GiB", "memory_log", "tensorrt_llm", gib(113.65), gib(5.95), gib(119.70), None),
    # vLLM
    ("(Worker_TP0 pid=2412213) INFO 12-11 00:06:53 [gpu_worker.py:359] Available KV cache memory: "
     "52.36 GiB", "kv_cache", "vllm", gib(52.36), None, None, None),
    ("(EngineCore_DP0 pid=2412130) INFO 12-11 00:06:53 [kv_cache_utils.py:1286] GPU KV cache "
     "size: 686,320 tokens", "kv_cache", "vllm", None, None, None, 686320),
    ("(EngineCore pid=258) INFO gpu_model_runner.py:4879 Model loading took 2.89 GiB memory and "
     "60.297843 seconds", "memory_log", "vllm", gib(2.89), None, None, None),
    ("INFO 03-02 10:11:12 [gpu_model_runner.py:1587] Model loading took 14.9889 GiB and 4.533131 "
     "seconds", "memory_log", "vllm", gib(14.9889), None, None, None),
    ("INFO 03-02 10:12:40 [gpu_model_runner.py:1902] Graph capturing finished in 5 secs, took "
     "0.45 GiB", "memory_log", "vllm", gib(0.45), None, None, None),
    ("ValueError: Free memory on device cuda:0 (7.34/15.49 GiB) on startup is less than desired "
     "GPU memory utilization (0.8, 12.39 GiB). Decrease GPU memory utilization or reduce GPU "
     "memory used by other processes.", "memory_log", "vllm", gib(12.39), gib(7.34), gib(15.49),
     None),
    ("Available KV cache memory: -2.81 GiB", "kv_cache", "vllm", gib(-2.81), None, None, None),
    # SGLang (its "GB" is 1 << 30 bytes)
    ("[2026-02-01 00:05:03 TP0] KV Cache is allocated. #tokens: 399740, K size: 1.52 GB, V size: "
     "1.52 GB", "kv_cache", "sglang", gib(3.04), None, None, 399740),
    ("[2026-02-26 16:41:18 TP6] KV Cache is allocated. #tokens: 2454421, KV size: 160.63 GB",
     "kv_cache", "sglang", gib(160.63), None, None, 2454421),
    ("[2025-02-04 05:29:17 TP0] KV Cache is allocated. K size: 2.82 GB, V size: 2.82 GB.",
     "kv_cache", "sglang", gib(5.64), None, None, None),
    ("[2026-02-04 11:30:29] Load weight end. elapsed=0.38 s, type=Qwen2ForCausalLM, "
     "dtype=torch.bfloat16, avail mem=77.45 GB, mem usage=0.98 GB.", "memory_log", "sglang",
     gib(0.98), gib(77.45), None, None),
    ("[2025-02-04 05:29:17 TP0] Load weight end. type=Qwen2ForCausalLM, dtype=torch.bfloat16, "
     "avail mem=8.37 GB", "memory_log", "sglang", None, gib(8.37), None, None),
    ("[2026-02-04 11:30:29] Memory pool end. avail mem=77.12 GB", "memory_log", "sglang", None,
     gib(77.12), None, None),
    ("[20:52:05] Capture target decode CUDA graph end. elapsed=12.47 s, mem usage=1.26 GB, avail "
     "mem=10.35 GB.", "memory_log", "sglang", gib(1.26), gib(10.35), None, None),
]  # fmt: skip

NOT_MEMORY_STATEMENTS = [
    "(EngineCore_DP0 pid=2412130) INFO 12-11 00:06:54 [kv_cache_utils.py:1291] Maximum "
    "concurrency for 100,000 tokens per request: 6.86x",
    "[TensorRT-LLM][INFO] Number of tokens per block: 32.",
    "[2026-02-04 11:30:29] Using KV cache dtype: torch.bfloat16",
    "INFO:     Application startup complete.",
    "Loading safetensors checkpoint shards: 100% | 4/4 [00:01<00:00, 2.31it/s]",
]


@pytest.mark.parametrize(
    "line,event,framework,nbytes,free,total,tokens", REAL_LINES, ids=lambda v: str(v)[:48]
)
def test_a_real_framework_line_is_recognised_with_its_numbers(
    line: str, event: str, framework: str, nbytes, free, total, tokens
) -> None:
    got = recognize(line)
    assert got is not None, line
    assert (got.recognizer.event, got.recognizer.framework) == (event, framework)
    assert (got.bytes, got.free_bytes, got.total_bytes, got.tokens) == (nbytes, free, total, tokens)


@pytest.mark.parametrize("line", NOT_MEMORY_STATEMENTS)
def test_other_lines_are_not_memory_statements(line: str) -> None:
    assert recognize(line) is None


def test_the_scanner_keeps_recognised_lines_as_log_events_in_the_recording_schema() -> None:
    lines = [t.encode() for t, *_ in REAL_LINES] + [t.encode() for t in NOT_MEMORY_STATEMENTS]
    scanner = LogScanner()
    batch = scanner.scan(lines, ts_ns=123)
    assert batch is not None and batch.schema.equals(SCHEMA)
    rows = batch.to_pylist()
    assert len(rows) == len(REAL_LINES) == scanner.events
    assert {r["stream"] for r in rows} == {"log"} and {r["ts_ns"] for r in rows} == {123}
    kv = [r for r in rows if r["event"] == "kv_cache"]
    assert {r["item"] for r in kv} == {"tensorrt_llm", "vllm", "sglang"}
    first = rows[0]
    assert (first["caller"], first["bytes"], first["count"]) == (
        "tensorrt_llm.kv_allocated",
        gib(26.91),
        220480,
    )
    assert first["text"] == REAL_LINES[0][0]
    assert scanner.scan([b"plain output", b"\xff\xfe not utf-8"], ts_ns=1) is None


def test_colour_codes_and_carriage_returns_do_not_hide_a_statement() -> None:
    line = b"\x1b[32mINFO\x1b[0m 12-11 00:06:53 Available KV cache memory: 52.36 GiB\r"
    batch = LogScanner().scan([line], ts_ns=5)
    assert batch is not None
    assert batch.to_pylist()[0]["bytes"] == gib(52.36)


def test_the_demo_workload_s_kv_line_is_read_back_as_the_bytes_it_allocated(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "uvmtrace.tracer.kvsizer", "--weights", str(tmp_path / "w.bin"),
         "--weights-size", "4M", "--signal", "meminfo", "--max-kv", "64M"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    res = parse_result(r.stdout)
    assert res is not None
    batch = LogScanner().scan(r.stdout.encode().splitlines(), ts_ns=0)
    assert batch is not None
    kv = [row for row in batch.to_pylist() if row["event"] == "kv_cache"]
    assert len(kv) == 1
    # The line has TensorRT-LLM's precision (0.01 GiB); the token count is exact.
    assert abs(kv[0]["bytes"] - res.kv_bytes) <= 0.005 * GIB
    assert kv[0]["count"] == res.kv_tokens
