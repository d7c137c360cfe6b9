"""Framework memory lines, as users' logs show them, become `log` events with their numbers.

tests/data/kv_log_corpus.jsonl holds real lines of TensorRT-LLM (C++ runtime 0.x and 1.x,
PyTorch backend), vLLM (V0 and V1), SGLang and llama.cpp, each with the public report or log it
was copied from and the bytes, tokens and blocks it must yield (sizes are the line's number
times its unit, which is binary even where the line says "GB" or "MB").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from uvmtrace.example.kvsizer import parse_result
from uvmtrace.recording.schema import SCHEMA
from uvmtrace.tracer.log_formats import STATEMENTS
from uvmtrace.tracer.logs import GIB, LogScanner, recognize, strip_prefixes

CORPUS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "kv_log_corpus.jsonl").read_text().splitlines()
]
FRAMEWORKS = {"tensorrt_llm", "vllm", "sglang", "llama_cpp"}


def gib(x: float) -> int:
    return round(x * GIB)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c["line"][-60:])
def test_every_corpus_line_yields_its_numbers(case: dict[str, Any]) -> None:
    got = recognize(case["line"], block_size=case.get("block_size_stated_before"))
    assert got is not None, case["line"]
    assert (got.event, got.framework) == (case["event"], case["framework"])
    numbers = (got.bytes, got.free_bytes, got.total_bytes, got.tokens, got.blocks)
    want = tuple(case[k] for k in ("bytes", "free_bytes", "total_bytes", "tokens", "blocks"))
    assert numbers == want
    if "block_size" in case:
        assert got.block_size == case["block_size"]


def test_the_corpus_covers_every_framework_and_cites_every_line() -> None:
    assert {c["framework"] for c in CORPUS} == FRAMEWORKS
    assert all(c["source"] for c in CORPUS)
    kv = [c for c in CORPUS if c["event"] == "kv_cache"]
    for fw in FRAMEWORKS:
        assert any(c["framework"] == fw and c["bytes"] is not None for c in kv), fw
    # the TensorRT-LLM 0.x statements this issue was filed for
    assert any("Allocate 69524783104 bytes for k/v cache" in c["line"] for c in kv)
    assert any("Using 132608 tokens in paged KV cache" in c["line"] for c in kv)


def test_every_statement_names_the_releases_that_print_it() -> None:
    assert all(s.releases and s.needle and s.framework in FRAMEWORKS for s in STATEMENTS)


def test_a_start_up_log_read_in_order_turns_block_counts_into_tokens() -> None:
    """vLLM 0.4.1 states the block size in its arguments, then the GPU blocks: 2358 x 16."""
    start_up = [c["line"].encode() for c in CORPUS if "vLLM 0.4.1" in c["source"]]
    scanner = LogScanner()
    batch = scanner.scan(start_up, ts_ns=7)
    assert batch is not None
    rows = batch.to_pylist()
    blocks = [r for r in rows if r["event"] == "kv_blocks"]
    tokens = [r for r in rows if r["event"] == "kv_cache"]
    assert [r["count"] for r in blocks] == [2358] and [r["count"] for r in tokens] == [2358 * 16]
    assert scanner.block_size == 16
    assert not [r for r in rows if r["event"] == "block_size"]  # remembered, not recorded


def test_the_scanner_records_the_corpus_in_the_recording_schema() -> None:
    scanner = LogScanner()
    batch = scanner.scan([c["line"].encode() for c in CORPUS], ts_ns=123)
    assert batch is not None and batch.schema.equals(SCHEMA)
    rows = batch.to_pylist()
    assert {r["stream"] for r in rows} == {"log"} and {r["ts_ns"] for r in rows} == {123}
    assert scanner.unparsed == 0
    statements = [c["line"] for c in CORPUS if c["event"] != "block_size"]
    assert len({r["text"] for r in rows}) == len(set(statements))  # none passed over
    assert all(r["item"] in FRAMEWORKS and r["caller"] for r in rows)
    kv = [r for r in rows if r["event"] == "kv_cache" and r["bytes"] is not None]
    assert {r["item"] for r in kv} == FRAMEWORKS
    first = next(r for r in rows if r["caller"] == "tensorrt_llm.kv_allocate_bytes")
    assert (first["bytes"], first["text"]) == (69524783104, CORPUS[0]["line"])


# Lines that name the KV cache (or look like it) but state no size of it.
NOT_STATEMENTS = [
    # vLLM 0.4.1 metrics (the v041 source): rates and percentages
    "INFO 05-04 15:15:56 metrics.py:229] Avg prompt throughput: 635.9 tokens/s, Avg generation "
    "throughput: 1234.8 tokens/s, Running: 92 reqs, Swapped: 0 reqs, Pending: 323 reqs, GPU KV "
    "cache usage: 98.9%, CPU KV cache usage: 0.0%",
    # vLLM V1 (tests/test_logs.py before): the file name in the prefix is no mention
    "(EngineCore_DP0 pid=2412130) INFO 12-11 00:06:54 [kv_cache_utils.py:1291] Maximum "
    "concurrency for 100,000 tokens per request: 6.86x",
    # triton-inference-server/tutorials#150
    "[TensorRT-LLM][WARNING] [kv cache manager] storeContextBlocks: Can not find sequence for "
    "request 2049",
    "[TensorRT-LLM][INFO] Max KV cache pages per sequence: 2048",
    "[2026-02-04 11:30:29] Using KV cache dtype: torch.bfloat16",
    "llama_kv_cache_init: layer 4: n_embd_k_gqa = 1024, n_embd_v_gqa = 1024",
    "INFO:     Application startup complete.",
    "Loading safetensors checkpoint shards: 100% | 4/4 [00:01<00:00, 2.31it/s]",
]


@pytest.mark.parametrize("line", NOT_STATEMENTS)
def test_other_lines_are_neither_statements_nor_counted(line: str) -> None:
    assert recognize(line) is None


# Real lines that state a KV-cache figure in a format the table does not know.
NOT_UNDERSTOOD = [
    # vllm-project/vllm-ascend#8289 (vLLM Ascend's own wording of the start-up advice)
    (
        "(EngineCore pid=2884597) INFO 04-15 06:30:01 [worker.py:575] Free memory on device "
        "(60.86/61.27 GiB) on startup. Desired GPU memory utilization is (0.9, 55.14 GiB). Actual "
        "usage: 1.14 GiB for weights, 0.22 GiB for peak activation, 0.13 GiB for non-torch "
        "memory, 0.04 GiB for NPU graph memory. Replace gpu_memory_utilization with "
        "`--kv-cache-memory=57403864576` (53.46 GiB) to fit in",
        "vllm",
    ),
    # guoqingbao/xinfer#55 (another engine, no known prefix)
    (
        "2025-11-10T11:17:53.007248Z  INFO vllm_rs::core::scheduler: GPU Kvcache: 115 blocks "
        "(7360 tokens) free, used 63.1% (0.58GB/0.91GB); CPU swap used 0.0% (0.00GB/4.57GB)",
        None,
    ),
]


@pytest.mark.parametrize("line,framework", NOT_UNDERSTOOD)
def test_a_kv_figure_in_an_unknown_format_is_kept_as_not_understood(
    line: str, framework: str | None
) -> None:
    got = recognize(line)
    assert got is not None and got.statement is None
    assert (got.event, got.framework, got.bytes, got.tokens) == (
        "log_unparsed",
        framework,
        None,
        None,
    )
    batch = LogScanner().scan([line.encode()], ts_ns=1)
    assert batch is not None
    row = batch.to_pylist()[0]
    assert (row["event"], row["item"], row["text"]) == ("log_unparsed", framework, line)


# Prefixes seen in front of the frameworks' messages, each from a public log.
PREFIXED = [
    # vllm-project/vllm#27073: `docker logs -t` in front of vLLM's own prefixes
    ("2025-10-14T23:59:26.998006749Z (APIServer pid=1) ERROR 10-14 16:59:26 "
     "[serving_chat.py:251]   File \"x.py\", line 704", "  File \"x.py\", line 704", "vllm"),
    # vllm-project/vllm#10439: `docker compose up`
    ("vllm-1  | INFO 11-18 18:07:17 api_server.py:175] Multiprocessing frontend",
     "Multiprocessing frontend", "vllm"),
    # a log viewer's time and bar in front of vLLM's prefixes (content-index id 52221836498)
    ("2026-04-19 12:18:36.356 | (APIServer pid=1) INFO 04-19 10:18:36 [utils.py:233] non-default "
     "args: {'model_tag': 'RedHatAI/Qwen3.6-35B-A3B-NVFP4'}",
     "non-default args: {'model_tag': 'RedHatAI/Qwen3.6-35B-A3B-NVFP4'}", "vllm"),
    # triton-inference-server/tutorials#150: Triton's glog prefix
    ("I0410 16:58:08.485508 1 model_lifecycle.cc:849] \"successfully loaded 'tensorrt_llm'\"",
     "\"successfully loaded 'tensorrt_llm'\"", None),
    # ollama/ollama#6279: journald in front of llama.cpp's function names
    ("Sep 11 01:16:15 lena ollama[1884]: llm_load_print_meta: model size       = 37.22 GiB "
     "(4.53 BPW)", "llm_load_print_meta: model size       = 37.22 GiB (4.53 BPW)", "llama_cpp"),
    ("[2025-02-04 05:29:17 TP0] Load weight end.", "Load weight end.", "sglang"),
    ("[2025-03-25 16:37:06 DP1 TP3] Memory pool end.", "Memory pool end.", "sglang"),
    ("[12/20/2025-04:21:51] [TRT-LLM] [I] Estimated", "Estimated", "tensorrt_llm"),
    ("[TensorRT-LLM][RANK 1][INFO] Loaded", "Loaded", "tensorrt_llm"),
    ("(VllmWorker rank=6 pid=989) INFO 06-21 10:00:18 llm_engine.py:128] # GPU", "# GPU", "vllm"),
    ("0.01.448.856 I init:      CUDA0 KV", "init:      CUDA0 KV", "llama_cpp"),
]  # fmt: skip


@pytest.mark.parametrize("line,message,framework", PREFIXED)
def test_prefixes_in_front_of_a_message_are_recognised(
    line: str, message: str, framework: str | None
) -> None:
    assert strip_prefixes(line) == (message, framework)


@pytest.mark.parametrize(
    "prefix",
    [
        "2025-10-14T23:59:26.998006749Z ",  # docker logs -t
        "2025-10-14T23:59:26.998006749Z stdout F ",  # a node's CRI log file
        "2025-10-14T23:59:26+00:00 ",  # kubectl logs --timestamps (RFC 3339 offset)
        "vllm-1  | ",  # docker compose up
        "\x1b[36mvllm-1  |\x1b[0m ",  # ... in colour
    ],
)
def test_a_container_runtime_s_prefix_hides_no_statement(prefix: str) -> None:
    """Composed: a transport prefix in front of the corpus' vLLM V1 and TensorRT-LLM 0.x lines."""
    for case in (c for c in CORPUS if "(Worker_TP0 pid=52)" in c["line"] or
                 "69524783104" in c["line"]):  # fmt: skip
        got = recognize(prefix + case["line"])
        assert got is not None and (got.bytes, got.framework) == (case["bytes"], case["framework"])


def test_colour_codes_and_carriage_returns_do_not_hide_a_statement() -> None:
    line = b"\x1b[32mINFO\x1b[0m 12-11 00:06:53 Available KV cache memory: 52.36 GiB\r"
    batch = LogScanner().scan([line], ts_ns=5)
    assert batch is not None
    assert batch.to_pylist()[0]["bytes"] == gib(52.36)
    redrawn = (
        b"Loading: 50%\rLoading: 100%\r[TensorRT-LLM][INFO] Using 10718 tokens in paged KV cache."
    )
    got = LogScanner().scan([redrawn], ts_ns=5)
    assert got is not None and got.to_pylist()[0]["count"] == 10718


def test_plain_output_and_bad_bytes_give_nothing() -> None:
    scanner = LogScanner()
    assert scanner.scan([b"plain output", b"\xff\xfe not utf-8", b""], ts_ns=1) is None
    assert (scanner.lines_seen, scanner.events, scanner.unparsed) == (3, 0, 0)


def test_the_demo_workload_s_kv_line_is_read_back_as_the_bytes_it_allocated(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "uvmtrace.example.kvsizer", "--weights", str(tmp_path / "w.bin"),
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
