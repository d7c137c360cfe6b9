"""Which framework a run is, and the sizing rule that framework uses. The evidence, strongest
first: the framework's own log lines (tracer/logs.py keeps them as `kv_cache` / `memory_log`
rows whose `item` names the framework), the command line and process names, then the library
its CUDA calls came from (XLA's plugin makes JAX's). Used to break ties between sizing rules
that fit equally well, and to call an allocation a KV cache or a pool only on evidence.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from uvmtrace.analysis.load import RunData

# framework -> (its sizing rule, what that rule sizes)
FRAMEWORK_RULE: dict[str, tuple[str, str]] = {
    "tensorrt_llm": ("fraction_of_free", "KV cache"),
    "vllm": ("fraction_of_total_minus_used", "KV cache"),
    "sglang": ("free_minus_fraction_of_total", "KV cache"),
    "jax": ("fraction_of_total", "preallocated pool"),
}
# The fraction each one uses when the user sets none (docs/sizing.md): TensorRT-LLM's
# free_gpu_memory_fraction, vLLM's gpu_memory_utilization, XLA_PYTHON_CLIENT_MEM_FRACTION.
# SGLang derives mem_fraction_static from the GPU's memory and the parallelism: no one default.
DEFAULT_FRACTION: dict[str, float] = {"tensorrt_llm": 0.9, "vllm": 0.9, "jax": 0.75}
# How each one shows in a command line or a process name (comm: 15 characters).
_NAMES = (
    ("tensorrt_llm", r"trtllm|tensorrt[_-]llm"),
    ("vllm", r"vllm"),
    ("sglang", r"sglang"),
    ("jax", r"(?<![a-z])jax|xla"),
)
_LIBRARIES = (("jax", r"xla|jaxlib|pjrt"),)


def _match(texts: list[str], patterns: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    for name, pattern in patterns:
        rx = re.compile(pattern, re.IGNORECASE)
        for text in texts:
            if rx.search(text):
                return name, text
    return None


def identify_framework(run: RunData) -> dict[str, Any] | None:
    """{name, evidence: log|command|process|library, detail} or None."""
    logged = (
        run.logs.filter(pl.col("event").is_in(["kv_cache", "memory_log"]))
        .select(pl.col("item").drop_nulls().unique(maintain_order=True))
        .to_series()
        .to_list()
    )
    known = [f for f in logged if f in FRAMEWORK_RULE]
    if known:
        return {"name": known[0], "evidence": "log", "detail": f"{known[0]} log lines"}
    argv = [run.meta.command_line] if run.meta.command_line else []
    comms = sorted(
        set(run.proc["comm"].drop_nulls().to_list()) | set(run.calls["comm"].drop_nulls().to_list())
    )
    for evidence, texts in (("command", argv), ("process", comms)):
        hit = _match(texts, _NAMES)
        if hit:
            return {"name": hit[0], "evidence": evidence, "detail": hit[1]}
    callers = run.calls.filter(pl.col("stream") == "cuda")["caller"].drop_nulls().unique()
    modules = sorted({c.split("!", 1)[0] for c in callers.to_list()})
    hit = _match(modules, _LIBRARIES)
    if hit:
        return {"name": hit[0], "evidence": "library", "detail": hit[1]}
    return None


def framework_rule(framework: dict[str, Any] | None) -> str | None:
    if framework is None:
        return None
    return FRAMEWORK_RULE.get(framework["name"], (None, None))[0]
