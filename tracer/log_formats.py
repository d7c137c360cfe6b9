"""What the frameworks print about their KV cache and memory: one table, release by release.

Each `Statement` is one format string of one framework, with the releases that print it and the
source file it comes from (paths in the framework's public repository; releases as seen in its
source history and in the public logs cited in tests/data/kv_log_corpus.jsonl). Each `Prefix` is
one thing printed in front of a framework's message: its logger's own prefix, or what a container
runtime, a log collector or a server puts in front of every line. tracer/logs.py reads both
tables; nothing else knows a format.

Units: every framework here computes sizes in powers of two even where it writes "GB" or "MB"
(vLLM's and SGLang's "GB" is 2^30 bytes, llama.cpp's 2023 "MB" 2^20), so `UNITS` maps the
decimal labels to binary sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
UNITS = {"bytes": 1, "B": 1, "KiB": KIB, "KB": KIB, "MiB": MIB, "MB": MIB, "GiB": GIB, "GB": GIB}

_NUM = r"[-+]?\d+(?:\.\d+)?"
_UNIT = r"(?P<unit>bytes|[KMG]i?B)"


@dataclass(frozen=True)
class Statement:
    name: str  # "<framework>.<statement>", stored in `caller`
    needle: str  # a literal every such line contains: only lines holding one are matched
    event: str  # kv_cache | kv_blocks | memory_log | block_size (remembered, not recorded)
    releases: str  # the releases that print it, and where
    pattern: str  # groups: bytes (+ bytes2, bytes3), free, total, tokens, blocks, block_size
    unit: int = 1  # bytes per unit, unless the line names its unit (group `unit`)

    @property
    def framework(self) -> str:  # stored in `item`
        return self.name.split(".", 1)[0]


# fmt: off
STATEMENTS: tuple[Statement, ...] = (
    # ---- TensorRT-LLM C++ runtime, "[TensorRT-LLM][INFO] " ----------------------------------
    Statement(
        "tensorrt_llm.kv_allocate_bytes", "bytes for k/v cache", "kv_cache",
        "C++ runtime before the [MemUsageChange] line below; seen in 0.8.0 logs "
        "(TensorRT-LLM#1400): 'Allocate %zu bytes for k/v cache. '",
        r"Allocate (?P<bytes>\d+) bytes for k/v cache",
    ),
    Statement(
        "tensorrt_llm.kv_using_tokens", "tokens in paged KV cache", "kv_cache",
        "cpp/tensorrt_llm/runtime/gptSession.cpp (GptSession::createKvCacheManager), 'Using %d "
        "tokens in paged KV cache.', seen in 0.5 (TensorRT-LLM#224, 2023-10) to 0.8.0 logs; "
        "Triton-backend builds of that time also 'Using %d total tokens in paged KV cache, and %d "
        "blocks per sequence'",
        r"Using (?P<tokens>\d+) (?:total )?tokens in paged KV cache",
    ),
    Statement(
        "tensorrt_llm.kv_allocated", "for max tokens in paged KV cache", "kv_cache",
        "cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp, '[MemUsageChange] Allocated %0.2f GiB "
        "for max tokens in paged KV cache (%d).', replacing the two lines above; seen in 0.17 "
        "(2025-02), 0.21 and 1.x (2025-12) logs",
        rf"\[MemUsageChange\] Allocated (?P<bytes>{_NUM}) GiB for max tokens in paged KV "
        rf"cache \((?P<tokens>\d+)\)", GIB,
    ),
    Statement(
        "tensorrt_llm.kv_sizing_memory", "Memory usage when calculating max tokens", "memory_log",
        "kvCacheManager.cpp, 'Memory usage when calculating max tokens in paged kv cache: total: "
        "%0.2f GiB, available: %0.2f GiB' (available = the free memory the fraction applies to); "
        "seen in 0.13 (TensorRT-LLM#2268, 2024-09) and later logs",
        rf"Memory usage when calculating max tokens in paged kv cache: total: "
        rf"(?P<total>{_NUM}) GiB, available: (?P<free>{_NUM}) GiB", GIB,
    ),
    Statement(
        "tensorrt_llm.kv_primary_blocks", "Number of blocks in KV cache primary pool", "kv_blocks",
        "kvCacheManager.cpp, 'Number of blocks in KV cache primary pool: %d' (the block size "
        "follows in 'Number of tokens per block'); seen in 0.13 logs (TensorRT-LLM#2268, 2024-09)",
        r"Number of blocks in KV cache primary pool: (?P<blocks>\d+)",
    ),
    Statement(
        "tensorrt_llm.kv_blocks_per_window", "tokens per block=", "kv_blocks",
        "kvCacheManager.cpp, 'Max KV cache pages|blocks per sequence: %d [window size=%d], tokens "
        "per block=%d, primary blocks=%d, secondary blocks=%d'; 'pages' seen in 2025-12 logs, "
        "'blocks' in 1.x logs (triton-inference-server/tutorials#150); earlier releases print "
        "only 'Max KV cache pages per sequence: %d'",
        r"Max KV cache (?:blocks|pages) per sequence: \d+ \[window size=\d+\], tokens per "
        r"block=(?P<block_size>\d+), primary blocks=(?P<blocks>\d+)",
    ),
    Statement(
        "tensorrt_llm.tokens_per_block", "Number of tokens per block:", "block_size",
        "'Number of tokens per block: %d.', seen in 0.17 (2025-02) to 1.x logs",
        r"Number of tokens per block: (?P<block_size>\d+)",
    ),
    Statement(
        "tensorrt_llm.engine_loaded", "Loaded engine size:", "memory_log",
        "TensorRT's engine deserialisation through the TensorRT-LLM logger; seen in 0.8 to 0.21 "
        "logs",
        rf"Loaded engine size: (?P<bytes>{_NUM}) MiB", MIB,
    ),
    Statement(
        "tensorrt_llm.execution_context", "for execution context memory", "memory_log",
        "cpp/tensorrt_llm/runtime/tllmRuntime.cpp; seen in 0.1x logs (tensorrtllm_backend#577)",
        rf"\[MemUsageChange\] Allocated (?P<bytes>{_NUM}) MiB for execution context memory", MIB,
    ),
    # ---- TensorRT-LLM PyTorch backend, "[MM/DD/YYYY-hh:mm:ss] [TRT-LLM] [I] " ----------------
    # tensorrt_llm/_torch/pyexecutor/_util.py (KvCacheCreator), 0.17-1.x
    Statement(
        "tensorrt_llm.kv_estimated", "Estimated max memory in KV cache", "memory_log",
        "PyTorch backend, _torch/pyexecutor/_util.py (KvCacheCreator), 'Estimated max memory in "
        "KV cache : %.2f GiB'; seen in 2025-12 logs",
        rf"Estimated max memory in KV cache : (?P<bytes>{_NUM}) GiB", GIB,
    ),
    Statement(
        "tensorrt_llm.weights_inside_torch", "model weights (inside torch)", "memory_log",
        "_torch/pyexecutor/_util.py, memory profiling lines added by TensorRT-LLM#4660 (2025-05); "
        "seen in 2025-12 logs",
        rf"Memory used after loading model weights \(inside torch\) in memory usage "
        rf"profiling: (?P<bytes>{_NUM}) GiB", GIB,
    ),
    Statement(
        "tensorrt_llm.weights_outside_torch", "model weights (outside torch)", "memory_log",
        "_torch/pyexecutor/_util.py (TensorRT-LLM#4660, 2025-05); seen in 2025-12 logs",
        rf"Memory used after loading model weights \(outside torch\) in memory usage "
        rf"profiling: (?P<bytes>{_NUM}) GiB", GIB,
    ),
    Statement(
        "tensorrt_llm.activations", "Memory dynamically allocated during inference",
        "memory_log",
        "_torch/pyexecutor/_util.py (TensorRT-LLM#4660, 2025-05); seen in 2025-12 logs",
        rf"Memory dynamically allocated during inference \(inside torch\) in memory usage "
        rf"profiling: (?P<bytes>{_NUM}) GiB", GIB,
    ),
    Statement(
        "tensorrt_llm.outside_torch", "Memory used outside torch", "memory_log",
        "_torch/pyexecutor/_util.py (TensorRT-LLM#4660, 2025-05); seen in 2025-12 logs",
        rf"Memory used outside torch \(e\.g\., NCCL and CUDA graphs\) in memory usage "
        rf"profiling: (?P<bytes>{_NUM}) GiB", GIB,
    ),
    Statement(
        "tensorrt_llm.peak_memory", "Peak memory during memory usage profiling", "memory_log",
        "_torch/pyexecutor/_util.py, 'Peak memory during memory usage profiling (torch + "
        "non-torch): %.2f GiB, available KV cache memory when calculating max tokens: %.2f GiB, "
        "fraction is set %s, kv size is %d. device total memory %.2f GiB, ...'; seen in 2025-12 "
        "logs",
        rf"Peak memory during memory usage profiling \(torch \+ non-torch\): "
        rf"(?P<bytes>{_NUM}) GiB, available KV cache memory when calculating max tokens: "
        rf"(?P<free>{_NUM}) GiB(?:.*?device total memory (?P<total>{_NUM}) GiB)?", GIB,
    ),
    # ---- vLLM, "[(<process> pid=N) ]INFO MM-DD hh:mm:ss [file.py:line] " -----------------------
    Statement(
        "vllm.gpu_blocks", " blocks: ", "kv_blocks",
        "V0 '# GPU blocks: %d, # CPU blocks: %d': llm_engine.py in 0.1 (vllm#184, 2023-06), "
        "executor/gpu_executor.py and distributed_gpu_executor.py in 0.4 (vllm#5248); V0 "
        "executor_base.py '# %s blocks: %d, # CPU blocks: %d' with the platform's name (cuda, "
        "CUDA, TPU, HPU, ...), seen in 0.6-0.8 logs; V1 v1/core/kv_cache_utils.py '# GPU blocks: "
        "%d' alone, 0.7 until vllm#13596 (2025-02)",
        r"# (?P<device>\w+) blocks: (?P<blocks>-?\d+)(?:, # CPU blocks: \d+)?",
    ),
    Statement(
        "vllm.block_size", "block_size", "block_size",
        "the OpenAI server's start-up 'args: Namespace(..., block_size=16, ...)' (seen in 0.4.1) "
        "and later 'non-default args: {...}' (seen 0.9-0.11; names block_size only when it was "
        "set)",
        r"\bblock_size(?:=|': )(?P<block_size>\d+)",
    ),
    Statement(
        "vllm.kv_tokens", "GPU KV cache size:", "kv_cache",
        "V1 v1/core/kv_cache_utils.py, 'GPU KV cache size: %s tokens' (commas), since vllm#13596 "
        "(2025-02); 2026 builds continue the line with the maximum concurrency",
        r"GPU KV cache size: (?P<tokens>\d[\d,]*) tokens",
    ),
    Statement(
        "vllm.kv_available", "Available KV cache memory:", "kv_cache",
        "V1 v1/worker/gpu_worker.py (determine_available_memory), 'Available KV cache memory: "
        "%.2f GiB'; seen from 2025-06 (vllm#19794) to 2026",
        rf"Available KV cache memory: (?P<bytes>{_NUM}) GiB", GIB,
    ),
    Statement(
        "vllm.kv_in_use", "Current kv cache memory in use is", "kv_cache",
        "V1 v1/worker/gpu_worker.py, after --kv-cache-memory was added (vllm#21489, 2025-07): "
        "'Free memory on device (%s/%s GiB) on startup. Desired GPU memory utilization is (%s, %s "
        "GiB). Actual usage is ... Current kv cache memory in use is %d bytes.' (seen 2025-09), "
        "later '... is %s GiB.' (seen 2026)",
        rf"(?:Free memory on device \((?P<free>{_NUM})/(?P<total>{_NUM}) GiB\).*?)?Current kv "
        rf"cache memory in use is (?P<bytes>{_NUM}) {_UNIT}",
    ),
    Statement(
        "vllm.kv_reserved", "reserved for KV Cache is", "kv_cache",
        "V0 worker/worker.py, '... the rest of the memory reserved for KV Cache is %.2fGiB.'; "
        "seen in 0.6.6 (vllm#11550, 2025-01) to 0.8 (vllm#14447) logs",
        rf"reserved for KV Cache is (?P<bytes>{_NUM}) ?GiB", GIB,
    ),
    Statement(
        "vllm.kv_available_table", "available_kv_cache_memory", "kv_cache",
        "V0 worker/worker.py memory-profiling table of vllm#10511 (2024-12), "
        "'available_kv_cache_memory  %.2fGiB'",
        rf"available_kv_cache_memory\s+(?P<bytes>{_NUM}) ?GiB", GIB,
    ),
    Statement(
        "vllm.kv_too_small", "stored in KV cache (", "kv_cache",
        "V0 worker/worker.py (raise_if_cache_size_invalid), 'The model's max seq len (%d) is "
        "larger than the maximum number of tokens that can be stored in KV cache (%d).'; seen in "
        "0.4-0.6 reports",
        r"maximum number of tokens that can be stored in KV cache \((?P<tokens>\d+)\)",
    ),
    Statement(
        "vllm.kv_insufficient", "than the available KV", "kv_cache",
        "V1 v1/core/kv_cache_utils.py (check_enough_kv_cache_memory) ValueError, seen in 0.8.3: "
        "'(%s GB KV cache is needed, which is larger than the available KV cache memory (%s GB).' "
        "(GB = 2^30), later '... (%.2f GiB). Based on the available memory, the estimated "
        "maximum model length is %d.'",
        rf"larger than the available (?i:KV cache) memory \((?P<bytes>{_NUM}) (?P<unit>GiB|GB)\)",
    ),
    Statement(
        "vllm.instance_budget", "the current vLLM instance can use", "memory_log",
        "V0 worker/worker.py, 'the current vLLM instance can use total_gpu_memory (%.2fGiB) x "
        "gpu_memory_utilization (%.2f) = %.2fGiB'; seen in 0.6.6 to 0.8 logs",
        rf"total_gpu_memory \((?P<total>{_NUM}) ?GiB\) x gpu_memory_utilization \({_NUM}\) = "
        rf"(?P<bytes>{_NUM}) ?GiB", GIB,
    ),
    Statement(
        "vllm.weights_loaded", "Loading model weights took", "memory_log",
        "'Loading model weights took %.4f GB' (GiB): V0 worker/model_runner.py, seen in 0.4.1 and "
        "0.6.6 logs; V1 v1/worker/gpu_model_runner.py in 0.7 (vllm#12569)",
        rf"Loading model weights took (?P<bytes>{_NUM}) GB", GIB,
    ),
    Statement(
        "vllm.model_loading", "Model loading took", "memory_log",
        "V1 v1/worker/gpu_model_runner.py, 'Model loading took %.4f GiB and %.6f seconds', seen "
        "in 0.8 (2025-03) logs; later 'Model loading took %s GiB memory and %.6f seconds' "
        "(2025-12)",
        rf"Model loading took (?P<bytes>{_NUM}) GiB (?:memory )?and", GIB,
    ),
    Statement(
        "vllm.cuda_graphs", "Graph capturing finished", "memory_log",
        "'Graph capturing finished in %.0f secs, took %.2f GiB', seen in V1 0.7-0.9 logs (V0 0.4 "
        "printed no size)",
        rf"Graph capturing finished in {_NUM} secs, took (?P<bytes>{_NUM}) GiB", GIB,
    ),
    Statement(
        "vllm.startup_free_memory", "on startup is less than desired", "memory_log",
        "V1 v1/worker/gpu_worker.py (init_device) ValueError, 'Free memory on device [cuda:0 "
        "](%s/%s GiB) on startup is less than desired GPU memory utilization (%s, %s GiB).'; seen "
        "in 0.9.2 (kvcached#110) and later",
        rf"Free memory on device (?:\S+ )?\((?P<free>{_NUM})/(?P<total>{_NUM}) GiB\) on "
        rf"startup is less than desired GPU memory utilization \({_NUM}, "
        rf"(?P<bytes>{_NUM}) GiB\)", GIB,
    ),
    # ---- SGLang, "[YYYY-MM-DD hh:mm:ss TPn] " ------------------------------------------------
    Statement(
        "sglang.kv_allocated", "KV Cache is allocated.", "kv_cache",
        "python/sglang/srt/mem_cache/memory_pool.py, 'KV Cache is allocated. K size: %.2f GB, V "
        "size: %.2f GB' (seen 2025-01), with '#tokens: %d, ' first (seen 2025-03 to 2026), MLA "
        "'KV size: %.2f GB' (seen 2025-05 to 2026), 'dtype: %s, ' first (seen 2026-09)",
        rf"KV Cache is allocated\. (?:dtype: [\w.]+, )?(?:#tokens: (?P<tokens>\d+), )?(?:K size: "
        rf"(?P<bytes>{_NUM}) GB, V size: (?P<bytes2>{_NUM}) GB|KV size: "
        rf"(?P<bytes3>{_NUM}) GB)", GIB,
    ),
    Statement(
        "sglang.max_total_num_tokens", "max_total_num_tokens=", "kv_cache",
        "the scheduler's start-up line 'max_total_num_tokens=%d, chunked_prefill_size=%d, ...', "
        "with ', available_gpu_mem=%.2f GB' at its end in 2025-2026 builds (sglang#29575)",
        rf"max_total_num_tokens=(?P<tokens>\d+)(?:.*?available_gpu_mem=(?P<free>{_NUM}) GB)?",
        GIB,
    ),
    Statement(
        "sglang.mamba_allocated", "Mamba Cache is allocated.", "memory_log",
        "mem_cache/memory_pool.py, hybrid linear-attention models: 'Mamba Cache is allocated. "
        "max_mamba_cache_size: %d, conv_state size: %.2fGB, ssm_state size: %.2fGB'; seen 2025-12 "
        "to 2026",
        rf"conv_state size: (?P<bytes>{_NUM}) ?GB, ssm_state size: (?P<bytes2>{_NUM}) ?GB", GIB,
    ),
    Statement(
        "sglang.weights_loaded", "Load weight end.", "memory_log",
        "srt/model_executor/model_runner.py, 'Load weight end. [elapsed=.., ]type=.., "
        "[dtype=..|quant=..], avail mem=%.2f GB[, mem usage=%.2f GB].'; seen 2025-02 to 2026",
        rf"Load weight end\..*?avail mem=(?P<free>{_NUM}) GB(?:, mem usage=(?P<bytes>{_NUM}) GB)?",
        GIB,
    ),
    Statement(
        "sglang.memory_pool_end", "Memory pool end.", "memory_log",
        "srt/model_executor/model_runner.py, 'Memory pool end. avail mem=%.2f GB'; seen 2025 to "
        "2026",
        rf"Memory pool end\. avail mem=(?P<free>{_NUM}) GB", GIB,
    ),
    Statement(
        "sglang.cuda_graphs", " graph end.", "memory_log",
        "srt/model_executor/cuda_graph_runner.py, 'Capture [..] cuda graph end. Time elapsed: "
        "%.2f s. mem usage=%.2f GB. avail mem=%.2f GB.' (NPU builds: 'npu graph'); seen 2025 to "
        "2026",
        rf"Capture (?:[\w ]+ )?(?:cuda|CUDA|npu) graph end\..*?mem usage=(?P<bytes>{_NUM}) GB"
        rf".*?avail mem=(?P<free>{_NUM}) GB", GIB,
    ),
    # ---- llama.cpp, "<function>: " (MiB; 2023 builds wrote "MB" for 2^20) ----------------------
    Statement(
        "llama_cpp.kv_self_size", " self size", "kv_cache",
        "'llama_init_from_file: kv self size  = %7.2f MB' (seen 2023-04, llama-cpp-python#66), "
        "then 'llama_new_context_with_model: KV self size  = %7.2f MiB, K (%s): ..., V (%s): ...' "
        "(seen 2023-12 to 2025-02), later llama_init_from_model / llama_context_kv_self (2025)",
        rf"(?i:kv) self size\s*=\s*(?P<bytes>{_NUM}) (?P<unit>MiB|MB)",
    ),
    Statement(
        "llama_cpp.kv_size", " cells, ", "kv_cache",
        "src/llama-kv-cache*.cpp, 'llama_kv_cache_unified: size = %7.2f MiB (%6u cells, %3d "
        "layers, %2u/%u seqs), K (%s): ...' (2025), renamed 'llama_kv_cache: size = ...' (seen "
        "2026)",
        rf"llama_kv_cache\w*: size =\s*(?P<bytes>{_NUM}) MiB \(\s*(?P<tokens>\d+) cells,",
        MIB,
    ),
    Statement(
        "llama_cpp.kv_buffer", "KV buffer size", "memory_log",
        "one line per device, 'llama_kv_cache_init:      CUDA0 KV buffer size = %8.2f MiB' "
        "(ggml-backend builds, seen 2024-01 on), later from llama_kv_cache_unified / "
        "llama_kv_cache; the total follows as 'KV self size' or 'size = ... cells'",
        rf"KV buffer size =\s*(?P<bytes>{_NUM}) MiB", MIB,
    ),
    Statement(
        "llama_cpp.kv_cells", " KV cache, size = ", "memory_log",
        "sliding-window models, 'llama_kv_cache_unified_iswa: creating [non-]SWA KV cache, size = "
        "%u cells' (seen 2025-06, llama.cpp#14043), later llama_kv_cache_iswa (2026)",
        r"creating\s+(?:non-)?SWA KV cache, size = (?P<tokens>\d+) cells",
    ),
)
# fmt: on


@dataclass(frozen=True)
class Prefix:
    name: str
    pattern: str  # anchored at the start of what is left of the line
    framework: str | None  # the framework whose logger writes it; None: a transport's prefix


# fmt: off
PREFIXES: tuple[Prefix, ...] = (
    # `docker logs -t`, `kubectl logs --timestamps`: RFC 3339 with nanoseconds
    Prefix("rfc3339", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d) ", None),
    # a node's container log file (CRI format): "<time> stdout F "
    Prefix("cri", r"(?:stdout|stderr) [FP] ", None),
    # log viewers that put their own time and a bar in front (Dozzle, Grafana exports)
    Prefix("viewer", r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \| ", None),
    # `docker compose up`: "service-1  | "
    Prefix("compose", r"[\w.-]+\s+\| ", None),
    # journald / syslog: "Sep 11 01:16:15 host unit[pid]: "
    Prefix("syslog", r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [\w.@-]+(?:\[\d+\])?: ", None),
    # Triton (glog): "I0410 16:58:08.485508 1 model_lifecycle.cc:849] "
    Prefix("triton", r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [\w.-]+:\d+\] ", None),
    Prefix("tensorrt_llm_cpp",
           r"\[TensorRT-LLM\](?:\[RANK \d+\])?\[(?:INFO|WARNING|ERROR|DEBUG|TRACE|VERBOSE)\] ",
           "tensorrt_llm"),
    Prefix("tensorrt_llm_py",
           r"\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\] \[TRT-LLM\](?: \[RANK \d+\])? \[[A-Z]\] ",
           "tensorrt_llm"),
    # vLLM's worker processes: "(EngineCore_DP0 pid=1) ", "(VllmWorker rank=6 pid=989) "
    Prefix("vllm_process", r"\([\w-]+(?: rank=\d+)? pid=\d+\) ", "vllm"),
    # vLLM's logger: "INFO 12-11 00:06:53 [gpu_worker.py:359] " (before 0.8: "... file.py:359] ";
    # some builds leave out the date)
    Prefix("vllm_logger",
           r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (?:\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? )?"
           r"\[?[\w./-]+\.py:\d+\]? ", "vllm"),
    # SGLang: "[2025-02-04 05:29:17 TP0] ", "[2026-02-04 11:30:29] ", "[2025-.. DP1 TP3 EP3] "
    Prefix("sglang",
           r"\[(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: (?:[A-Z]{2}\d+ ?)+)?|(?:[A-Z]{2}\d+ ?)+)\] ",
           "sglang"),
    # llama.cpp's common logger: "0.00.029.722 I " (optionally "[pid] " first)
    Prefix("llama_cpp_log", r"(?:\[\d+\] )?\d+\.\d\d\.\d{3}\.\d{3} [DIWE] ", "llama_cpp"),
)
# fmt: on

# A message that starts with a llama.cpp function name is llama.cpp's (it has no other prefix).
LLAMA_CPP_FUNCTION = re.compile(r"(?:llama|llm|load_tensors)\w*: ")

# A line "mentions the KV cache" when it names it; it "states a figure" when a number with a
# size or capacity unit follows. Lines with both that no statement understands are counted.
# (whole words: vLLM's file name kv_cache_utils.py in its prefix is no mention; llama.cpp's
# function names llama_kv_cache*: are)
KV_MENTION = (
    r"(?i:\b(?:kv|k/v)[ _-]?cache\b|\bkvcache\b|\bkv (?:buffer|self) size)|\bllama_kv_cache\w*:"
)
# (a rate such as "635.9 tokens/s" is no figure of the cache)
KV_FIGURE = re.compile(
    r"\d(?:[\d,]*\d)?(?:\.\d+)?\s*(?:[KMGT]i?B|bytes|tokens|blocks|cells)\b(?!/)"
)
