"""Recognising what a framework says about its own memory in its output (stream "log").

`uvmtrace record` shows the command's output live and passes every line through `LogScanner`,
which keeps the lines where TensorRT-LLM, vLLM or SGLang state a KV-cache size (`kv_cache`) or
another memory figure (`memory_log`), so a report can set "the framework says it allocated X GiB"
beside the allocation that was traced. The formats are the frameworks' own format strings; the
file each one comes from is named next to its pattern (paths in their public repositories).

Cheap by construction: one compiled alternation of literal needles (one per statement) runs
over the raw bytes of each line; only a line holding a needle is decoded and matched against
that statement's pattern (about 2.5 us per ordinary line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from uvmtrace.recording.schema import make_batch

GIB = 1 << 30
MIB = 1 << 20
_NUM = r"[-+]?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class Recognizer:
    name: str  # "<framework>.<statement>", stored in `caller`
    needle: str  # a literal every such line contains: only lines holding one are matched
    event: str  # kv_cache | memory_log
    unit: int  # bytes per unit of the numbers in this line
    pattern: str  # groups: bytes (bytes2, bytes3 added to it), free, total, tokens

    @property
    def framework(self) -> str:  # stored in `item`
        return self.name.split(".", 1)[0]


# fmt: off
RECOGNIZERS: tuple[Recognizer, ...] = (
    # --- TensorRT-LLM C++ runtime, "[TensorRT-LLM][INFO] " prefix ---------------------------
    # cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp:
    #   "[MemUsageChange] Allocated %0.2f GiB for max tokens in paged KV cache (%d)."
    Recognizer(
        "tensorrt_llm.kv_allocated", "for max tokens in paged KV cache", "kv_cache", GIB,
        rf"\[MemUsageChange\] Allocated (?P<bytes>{_NUM}) GiB for max tokens in paged KV "
        rf"cache \((?P<tokens>\d+)\)"
    ),
    # cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp (and trtGptModelInflightBatching.cpp):
    #   "Memory usage when calculating max tokens in paged kv cache: total: %0.2f GiB,
    #    available: %0.2f GiB"  -- `available` is the free memory the fraction applies to
    Recognizer(
        "tensorrt_llm.kv_sizing_memory", "Memory usage when calculating max tokens",
        "memory_log", GIB,
        rf"Memory usage when calculating max tokens in paged kv cache: total: "
        rf"(?P<total>{_NUM}) GiB, available: (?P<free>{_NUM}) GiB"
    ),
    # TensorRT's engine deserialisation, through TensorRT-LLM's logger: "Loaded engine size: %d MiB"
    Recognizer(
        "tensorrt_llm.engine_loaded", "Loaded engine size:", "memory_log", MIB,
        rf"Loaded engine size: (?P<bytes>{_NUM}) MiB"
    ),
    # cpp/tensorrt_llm/runtime/tllmRuntime.cpp:
    #   "[MemUsageChange] Allocated %.2f MiB for execution context memory."
    Recognizer(
        "tensorrt_llm.execution_context", "for execution context memory", "memory_log", MIB,
        rf"\[MemUsageChange\] Allocated (?P<bytes>{_NUM}) MiB for execution context memory"
    ),
    # --- TensorRT-LLM PyTorch backend, "[TRT-LLM] [I] " prefix -----------------------------
    # tensorrt_llm/_torch/pyexecutor/_util.py (KvCacheCreator):
    Recognizer(
        "tensorrt_llm.kv_estimated", "Estimated max memory in KV cache", "memory_log", GIB,
        rf"Estimated max memory in KV cache : (?P<bytes>{_NUM}) GiB"
    ),
    Recognizer(
        "tensorrt_llm.weights_inside_torch", "model weights (inside torch)", "memory_log", GIB,
        rf"Memory used after loading model weights \(inside torch\) in memory usage "
        rf"profiling: (?P<bytes>{_NUM}) GiB"
    ),
    Recognizer(
        "tensorrt_llm.weights_outside_torch", "model weights (outside torch)", "memory_log", GIB,
        rf"Memory used after loading model weights \(outside torch\) in memory usage "
        rf"profiling: (?P<bytes>{_NUM}) GiB"
    ),
    Recognizer(
        "tensorrt_llm.activations", "Memory dynamically allocated during inference",
        "memory_log", GIB,
        rf"Memory dynamically allocated during inference \(inside torch\) in memory usage "
        rf"profiling: (?P<bytes>{_NUM}) GiB"
    ),
    Recognizer(
        "tensorrt_llm.outside_torch", "Memory used outside torch", "memory_log", GIB,
        rf"Memory used outside torch \(e\.g\., NCCL and CUDA graphs\) in memory usage "
        rf"profiling: (?P<bytes>{_NUM}) GiB"
    ),
    #   "Peak memory during memory usage profiling (torch + non-torch): %.2f GiB, available KV
    #    cache memory when calculating max tokens: %.2f GiB, fraction is set %s, kv size is %d.
    #    device total memory %.2f GiB, ..."
    Recognizer(
        "tensorrt_llm.peak_memory", "Peak memory during memory usage profiling", "memory_log", GIB,
        rf"Peak memory during memory usage profiling \(torch \+ non-torch\): "
        rf"(?P<bytes>{_NUM}) GiB, available KV cache memory when calculating max tokens: "
        rf"(?P<free>{_NUM}) GiB(?:.*?device total memory (?P<total>{_NUM}) GiB)?"
    ),
    # --- vLLM (v1 engine), "INFO MM-DD hh:mm:ss [file.py:line] " prefix ----------------------
    # vllm/v1/worker/gpu_worker.py (determine_available_memory):
    #   "Available KV cache memory: %s GiB" (older: "%.2f GiB"; some builds add a suffix)
    Recognizer(
        "vllm.kv_available", "Available KV cache memory:", "kv_cache", GIB,
        rf"Available KV cache memory: (?P<bytes>{_NUM}) GiB"
    ),
    # vllm/v1/core/kv_cache_utils.py: "GPU KV cache size: %s tokens" (tokens with commas)
    Recognizer(
        "vllm.kv_tokens", "GPU KV cache size:", "kv_cache", GIB,
        r"GPU KV cache size: (?P<tokens>\d[\d,]*) tokens"
    ),
    # vllm/v1/worker/gpu_model_runner.py (load_model):
    #   "Model loading took %s GiB memory and %.6f seconds" (older: "took %.4f GiB and ...")
    Recognizer(
        "vllm.model_loading", "Model loading took", "memory_log", GIB,
        rf"Model loading took (?P<bytes>{_NUM}) GiB (?:memory )?and"
    ),
    # vllm/v1/worker/gpu_model_runner.py (capture_model):
    #   "Graph capturing finished in %.0f secs, took %.2f GiB"
    Recognizer(
        "vllm.cuda_graphs", "Graph capturing finished", "memory_log", GIB,
        rf"Graph capturing finished in {_NUM} secs, took (?P<bytes>{_NUM}) GiB"
    ),
    # vllm/v1/worker/gpu_worker.py (init_device), the start-up check of free memory:
    #   "Free memory on device [cuda:0 ](%s/%s GiB) on startup is less than desired GPU memory
    #    utilization (%s, %s GiB)."
    Recognizer(
        "vllm.startup_free_memory", "on startup is less than desired", "memory_log", GIB,
        rf"Free memory on device (?:\S+ )?\((?P<free>{_NUM})/(?P<total>{_NUM}) GiB\) on "
        rf"startup is less than desired GPU memory utilization \({_NUM}, "
        rf"(?P<bytes>{_NUM}) GiB\)"
    ),
    # --- SGLang, "[YYYY-MM-DD hh:mm:ss TPn] " prefix; its "GB" is 1 << 30 bytes ---------------
    # python/sglang/srt/mem_cache/memory_pool.py (MHATokenToKVPool):
    #   "KV Cache is allocated. #tokens: {size}, K size: {k / GB:.2f} GB, V size: {v / GB:.2f} GB"
    # (MLATokenToKVPool: "... #tokens: {size}, KV size: {kv / GB:.2f} GB"; older builds omit
    # "#tokens: N, ")
    Recognizer(
        "sglang.kv_allocated", "KV Cache is allocated.", "kv_cache", GIB,
        rf"KV Cache is allocated\. (?:#tokens: (?P<tokens>\d+), )?(?:K size: "
        rf"(?P<bytes>{_NUM}) GB, V size: (?P<bytes2>{_NUM}) GB|KV size: "
        rf"(?P<bytes3>{_NUM}) GB)"
    ),
    # python/sglang/srt/model_executor/model_runner.py (load_model):
    #   "Load weight end. [elapsed=.., ]type=.., [dtype=..|quant..], avail mem=%.2f GB,
    #    mem usage=%.2f GB."
    Recognizer(
        "sglang.weights_loaded", "Load weight end.", "memory_log", GIB,
        rf"Load weight end\..*?avail mem=(?P<free>{_NUM}) GB"
        rf"(?:, mem usage=(?P<bytes>{_NUM}) GB)?"
    ),
    # python/sglang/srt/model_executor/model_runner.py (init_memory_pool):
    #   "Memory pool end. avail mem=%.2f GB"
    Recognizer(
        "sglang.memory_pool_end", "Memory pool end.", "memory_log", GIB,
        rf"Memory pool end\. avail mem=(?P<free>{_NUM}) GB"
    ),
    # python/sglang/srt/model_executor/cuda_graph_runner.py:
    #   "Capture cuda graph end. Time elapsed: %.2f s. mem usage=%.2f GB. avail mem=%.2f GB."
    Recognizer(
        "sglang.cuda_graphs", " graph end.", "memory_log", GIB,
        rf"Capture (?:[\w ]+ )?(?:cuda|CUDA) graph end\..*?mem usage=(?P<bytes>{_NUM}) GB"
        rf".*?avail mem=(?P<free>{_NUM}) GB"
    ),
)
# fmt: on

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FIELDS = ("bytes", "bytes2", "bytes3", "free", "total", "tokens")
# One alternation of literals picks the candidate recogniser; only then does its pattern run.
_NEEDLES = re.compile(b"|".join(re.escape(r.needle.encode()) for r in RECOGNIZERS))
_BY_NEEDLE = {r.needle.encode(): r for r in RECOGNIZERS}
_PATTERNS = {r.name: re.compile(r.pattern) for r in RECOGNIZERS}
assert len(_BY_NEEDLE) == len(RECOGNIZERS), "needles must be unique"


@dataclass(frozen=True)
class LogEvent:
    recognizer: Recognizer
    bytes: int | None
    free_bytes: int | None
    total_bytes: int | None
    tokens: int | None
    text: str


def recognize(line: str) -> LogEvent | None:
    """The memory statement in one output line, if it is one we know."""
    hit = _NEEDLES.search(line.encode())
    return _match(_BY_NEEDLE[hit.group()], line) if hit else None


def _match(rec: Recognizer, line: str) -> LogEvent | None:
    m = _PATTERNS[rec.name].search(line)
    if m is None:
        return None
    groups = m.groupdict()

    def amount(*fields: str) -> int | None:
        values = [float(v) for f in fields if (v := groups.get(f)) is not None]
        return round(sum(values) * rec.unit) if values else None

    tokens = groups.get("tokens")
    return LogEvent(
        recognizer=rec,
        bytes=amount("bytes", "bytes2", "bytes3"),
        free_bytes=amount("free"),
        total_bytes=amount("total"),
        tokens=int(tokens.replace(",", "")) if tokens else None,
        text=line,
    )


class LogScanner:
    """Turns output lines into `log` events (`kv_cache`, `memory_log`); see docs/recording.md."""

    def __init__(self) -> None:
        self.lines_seen = 0
        self.events = 0

    def scan(self, lines: list[bytes], ts_ns: int) -> pa.RecordBatch | None:
        self.lines_seen += len(lines)
        found: list[LogEvent] = []
        for raw in lines:
            hit = _NEEDLES.search(raw)
            if hit is None:
                continue
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            if "\x1b" in text:
                text = _ANSI.sub("", text)
            event = _match(_BY_NEEDLE[hit.group()], text)
            if event is not None:
                found.append(event)
        if not found:
            return None
        self.events += len(found)
        return make_batch(
            {
                "ts_ns": ts_ns,
                "stream": "log",
                "event": [e.recognizer.event for e in found],
                "item": [e.recognizer.framework for e in found],
                "caller": [e.recognizer.name for e in found],
                "bytes": [e.bytes for e in found],
                "free_bytes": [e.free_bytes for e in found],
                "total_bytes": [e.total_bytes for e in found],
                "count": [e.tokens for e in found],
                "text": [e.text for e in found],
            },
            num_rows=len(found),
        )
