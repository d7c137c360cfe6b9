"""KV-sizing inference: which memory query's answer, through which framework rule, gave a large
allocation (or a group of allocations) its size; and how far that answer was from what the
process could really use.

Candidates: every large allocation (>= min_bytes: CUDA allocations, anonymous host mmaps), and
every allocation GROUP: the allocations of one process that follow one memory query within
GROUP_GAP_NS of each other (the KV cache is often one tensor per layer, or thousands of VMM
chunks: torch's expandable segments map 20 MiB at a time). VMM (`cuMemCreate`) and stream-ordered
pool allocations count like `cuMemAlloc`. For each candidate and signal we take the last query
of that signal the same process made before it (`join_asof` by pid and signal) and fit each rule
of sizing_rules.py at each fraction frameworks use; a rule fits when the fraction the size implies
is within `tolerance` of one. The best fit has the smallest residual in bytes; fits within
TIE_BYTES of it are a tie, won by the rule of the framework the run is (frameworks.py), then by the
simpler rule. The signals:

  cuMemGetInfo, nvmlDeviceGetMemoryInfo, sysinfo   (shim and kernel stream; the value returned)
  MemFree / MemAvailable (/proc/meminfo)  an `openat` of /proc/meminfo, valued by the nearest
                                          meminfo sample (the probe sees the open, not the read)
  cgroup headroom (memory.* files)        an `openat` of a cgroup memory file, valued as
                                          limit - usage of the process's cgroup, nearest sample
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from uvmtrace.analysis.cuda_memory import NO_PID, cuda_allocations, process_device_peak_before
from uvmtrace.analysis.frameworks import (
    DEFAULT_FRACTION,
    FRAMEWORK_RULE,
    framework_rule,
    identify_framework,
)
from uvmtrace.analysis.items import (
    CUDA_ALLOC_EVENTS,
    CUDA_QUERY_SIGNAL,
    DEFAULT_MIN_ALLOC,
    DEFAULT_TOLERANCE,
    DEVICE_MEMORY_KINDS,
    DEVICE_SIGNALS,
    KNOWN_FRACTIONS,
    NO_LIMIT,
    SIGNAL_HEADROOM,
    SIGNAL_MEMAVAILABLE,
    SIGNAL_MEMFREE,
    SYSTEM_SIGNALS,
)
from uvmtrace.analysis.levels import rel_s
from uvmtrace.analysis.load import RunData
from uvmtrace.analysis.memory_limit import limit_at_query
from uvmtrace.analysis.scope import command_pids, process_cgroups
from uvmtrace.analysis.sizing_rules import (
    RULE_ORDER,
    RULES,
    UNKNOWN,
    base,
    implied_fraction,
    predicted_bytes,
    reads_free,
)
from uvmtrace.analysis.sizing_rules import predicted as rule_predicted

# When two signals fit equally (the shim's and the kernel's view of one sysinfo() call, or a
# cuMemGetInfo that returns MemFree), name the one closest to the framework's own call.
SIGNAL_ORDER = {
    s: i
    for i, s in enumerate(
        [
            "cuMemGetInfo",
            "nvmlDeviceGetMemoryInfo",
            "sysinfo",
            SIGNAL_MEMFREE,
            SIGNAL_MEMAVAILABLE,
            SIGNAL_HEADROOM,
        ]
    )
}
MAP_ANONYMOUS = 0x20
# Allocations of one process after one query, each at most this long after the previous one,
# are one group (per-layer tensors came 0.5-30 ms apart on the H200; docs/validation.md).
GROUP_GAP_NS = 500_000_000
GROUP_MIN_PART = 1 << 20  # smaller allocations (cuDNN's, XLA's pinned staging) are never KV
# Fits closer than this are a tie (allocators round each allocation up to 2 MiB)
TIE_BYTES = 16 << 20
NEAREST = 3  # candidates shown for an allocation no rule explains
# A fit is the sizing only when a size drawn at random from the plausible range would fit some
# rule x fraction x signal as closely with a small chance (docs/sizing.md, "Chance"): with 0.003
# of ~140 GB around each of ~90 predictions, a lone allocation fits *some* rule ~40% of the time.
CHANCE_MAX = 0.01
# ... or a moderate one when the process allocated right after the query, nothing between (the
# shape of every sizer: query, compute, allocate) -- corroboration, not proof
CHANCE_CORROBORATED = 0.05
PAGE = 4096  # the finest a size can be matched to: memory comes in pages
# recordings fitted together by sized_allocations: the fixed cost of its ~50 operations shared,
# its memory (a few hundred KiB per recording) bounded
FIT_BATCH = 64

_QUERY_SCHEMA = {
    "q_ts_ns": pl.Int64,
    "pid": pl.Int32,
    "signal": pl.String,
    "free_bytes": pl.Int64,
    "total_bytes": pl.Int64,
}
_PEAK_SCHEMA = {"pid": pl.Int32, "ts_ns": pl.Int64, "peak_so_far": pl.Int64}
_PART_SCHEMA = {
    "ts_ns": pl.Int64,
    "pid": pl.Int32,
    "event": pl.String,
    "source": pl.String,
    "memory": pl.String,
    "bytes": pl.Int64,
}


def allocation_parts(run: RunData, min_bytes: int = DEFAULT_MIN_ALLOC) -> pl.DataFrame:
    """What can make up a sized allocation: CUDA allocations of at least GROUP_MIN_PART and
    anonymous host mmaps of at least `min_bytes`: ts_ns, pid, event, source, memory (device:
    device/vmm/pool; host: pinned, managed, mmap), bytes."""
    device = pl.col("kind").is_in(sorted(DEVICE_MEMORY_KINDS))
    cuda = cuda_allocations(run).filter(
        pl.col("call").is_in(sorted(CUDA_ALLOC_EVENTS)) & (pl.col("bytes") >= GROUP_MIN_PART)
    )
    cuda = cuda.select(
        "ts_ns",
        "pid",
        pl.col("call").alias("event"),
        pl.lit("cuda").alias("source"),
        pl.when(device).then(pl.lit("device")).otherwise(pl.lit("host")).alias("memory"),
        "bytes",
    )
    anonymous = pl.col("flags").is_null() | ((pl.col("flags") & MAP_ANONYMOUS) != 0)
    # PROT_NONE reserves address space, not memory (Go's heap arenas, glibc's thread arenas)
    memory = pl.col("item").is_null() | ~pl.col("item").str.starts_with("---")
    host = run.mappings.filter(
        (pl.col("event") == "mmap")
        & pl.col("path").is_null()
        & anonymous
        & memory
        & (pl.col("bytes") >= min_bytes)
        & (pl.col("result").is_null() | (pl.col("result") >= 0))
    ).select(
        "ts_ns",
        "pid",
        "event",
        pl.lit("kernel").alias("source"),
        pl.lit("host").alias("memory"),
        "bytes",
    )
    return pl.concat([cuda.cast(_PART_SCHEMA), host.cast(_PART_SCHEMA)]).sort(
        "ts_ns", maintain_order=True
    )


def large_allocations(run: RunData, min_bytes: int = DEFAULT_MIN_ALLOC) -> pl.DataFrame:
    """Single allocations of at least `min_bytes`: ts_ns, pid, event, source, memory, bytes."""
    return (
        allocation_parts(run, min_bytes)
        .filter(pl.col("bytes") >= min_bytes)
        .with_row_index("alloc")
    )


def group_allocations(parts: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """`parts` with a `group` id: same process, same memory (device/host), same last query
    before them, each within GROUP_GAP_NS of the previous one; `epoch` (that query's ts_ns, -1
    for none) and `lead` (the process's first part after that query: nothing came between).
    With a `file` column in both, the recordings of many files are grouped in one pass."""
    one = "file" not in parts.columns
    if one:
        parts = parts.with_columns(pl.lit(0, dtype=pl.UInt32).alias("file"))
        queries = queries.with_columns(pl.lit(0, dtype=pl.UInt32).alias("file"))
    pkey = pl.col("pid").fill_null(NO_PID)
    epochs = (
        queries.select("file", pl.col("q_ts_ns").alias("epoch"), pkey.alias("pkey"))
        .unique()
        .sort("epoch")
    )
    p = parts.with_columns(pkey.alias("pkey")).sort("ts_ns")
    if epochs.is_empty():
        p = p.with_columns(pl.lit(None, dtype=pl.Int64).alias("epoch"))
    else:
        p = p.join_asof(
            epochs,
            left_on="ts_ns",
            right_on="epoch",
            by=["file", "pkey"],
            strategy="backward",
            check_sortedness=False,
        )
    p = p.with_columns(pl.col("epoch").fill_null(-1)).sort(["file", "pkey", "memory", "ts_ns"])
    changed = [pl.col(k) != pl.col(k).shift() for k in ("file", "pkey", "memory", "epoch")]
    gap = (pl.col("ts_ns") - pl.col("ts_ns").shift()) > GROUP_GAP_NS
    new = pl.any_horizontal([*changed, gap]).fill_null(True)
    lead = (pl.col("epoch") >= 0) & (
        pl.col("ts_ns") == pl.col("ts_ns").min().over("file", "pkey", "epoch")
    )
    grouped = (
        p.with_columns(new.cum_sum().alias("group"), lead.alias("lead"))
        .drop("pkey")
        .sort("file", "ts_ns", maintain_order=True)
    )
    return grouped.drop("file") if one else grouped


def split_by_scope(run: RunData, allocs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(allocations of the traced command's processes, allocations of other processes)."""
    pids = command_pids(run)
    if pids is None:
        return allocs, allocs.clear()
    inside = pl.col("pid").is_in(sorted(pids))
    return allocs.filter(inside), allocs.filter(~inside | pl.col("pid").is_null())


def default_cgroup(run: RunData) -> int | None:
    targets = list(run.meta.target_cgroups)
    return int(targets[0]) if targets else None


def meminfo_series(run: RunData, item: str) -> pl.DataFrame:
    return (
        run.samples.filter((pl.col("event") == "meminfo") & (pl.col("item") == item))
        .select(pl.col("ts_ns").alias("s_ts_ns"), pl.col("bytes").alias(item))
        .sort("s_ts_ns")
    )


def headroom_series(run: RunData) -> pl.DataFrame:
    """limit - usage per cgroup and sample: s_ts_ns, cgroup_id, headroom (null: no limit)."""
    cur = run.samples.filter(pl.col("event") == "memory.current").select(
        pl.col("ts_ns").alias("s_ts_ns"), "cgroup_id", pl.col("bytes").alias("current")
    )
    lim = run.samples.filter(pl.col("event") == "memory.limit").select(
        pl.col("ts_ns").alias("l_ts_ns"), "cgroup_id", pl.col("bytes").alias("limit")
    )
    if cur.is_empty() or lim.is_empty():
        return pl.DataFrame(
            schema={"s_ts_ns": pl.Int64, "cgroup_id": pl.UInt64, "headroom": pl.Int64}
        )
    joined = cur.sort("s_ts_ns").join_asof(
        lim.sort("l_ts_ns"),
        left_on="s_ts_ns",
        right_on="l_ts_ns",
        by="cgroup_id",
        strategy="nearest",
        check_sortedness=False,
    )
    unlimited = pl.col("limit").is_null() | (pl.col("limit") >= NO_LIMIT)
    return joined.select(
        "s_ts_ns",
        "cgroup_id",
        pl.when(unlimited)
        .then(None)
        .otherwise(pl.col("limit") - pl.col("current"))
        .alias("headroom"),
    )


def _with_cgroup(frame: pl.DataFrame, run: RunData) -> pl.DataFrame:
    fallback = default_cgroup(run)
    return frame.join(process_cgroups(run), on="pid", how="left").with_columns(
        pl.col("cgroup_id").fill_null(pl.lit(fallback, dtype=pl.UInt64))
    )


def _at(frame: pl.DataFrame, series: pl.DataFrame, ts: str, by: str | None = None) -> pl.DataFrame:
    """Join the nearest sample of `series` to each row of `frame` at time `ts`."""
    if series.is_empty():
        cols = [c for c in series.columns if c not in ("s_ts_ns", by)]
        return frame.with_columns([pl.lit(None, dtype=series.schema[c]).alias(c) for c in cols])
    return (
        frame.sort(ts)
        .join_asof(
            series,
            left_on=ts,
            right_on="s_ts_ns",
            by=by,
            strategy="nearest",
            check_sortedness=False,
        )
        .drop("s_ts_ns")
    )


def memory_queries(run: RunData) -> pl.DataFrame:
    """Every memory query with the values it answered: q_ts_ns, pid, signal, free_bytes,
    total_bytes (null where the signal tells no total)."""
    ok = pl.col("result").is_null() | (pl.col("result") == 0)
    direct = run.calls.filter(
        pl.col("call").is_in(list(CUDA_QUERY_SIGNAL)) & pl.col("free_bytes").is_not_null() & ok
    ).select(
        pl.col("ts_ns").alias("q_ts_ns"),
        "pid",
        pl.col("call").replace_strict(CUDA_QUERY_SIGNAL).alias("signal"),
        "free_bytes",
        "total_bytes",
    )
    opens = run.calls.filter(
        (pl.col("stream") == "kernel") & (pl.col("call") == "openat") & pl.col("path").is_not_null()
    ).select(pl.col("ts_ns").alias("q_ts_ns"), "pid", "path")
    meminfo_reads = opens.filter(pl.col("path") == "/proc/meminfo")
    parts = [direct]
    for item, signal in (("MemFree", SIGNAL_MEMFREE), ("MemAvailable", SIGNAL_MEMAVAILABLE)):
        if meminfo_reads.is_empty():
            break  # no read of /proc/meminfo: no series to build
        series = meminfo_series(run, item)
        if series.is_empty():
            continue
        parts.append(
            _at(meminfo_reads, series, "q_ts_ns").select(
                "q_ts_ns",
                "pid",
                pl.lit(signal).alias("signal"),
                pl.col(item).alias("free_bytes"),
                pl.lit(None, dtype=pl.Int64).alias("total_bytes"),
            )
        )
    cgroup_reads = opens.filter(
        pl.col("path").str.starts_with("/sys/fs/cgroup")
        & pl.col("path").str.contains(r"/memory\.[^/]*$")
    )
    headroom = headroom_series(run) if not cgroup_reads.is_empty() else None
    if headroom is not None and not headroom.is_empty():
        parts.append(
            _at(_with_cgroup(cgroup_reads, run), headroom, "q_ts_ns", by="cgroup_id").select(
                "q_ts_ns",
                "pid",
                pl.lit(SIGNAL_HEADROOM).alias("signal"),
                pl.col("headroom").alias("free_bytes"),
                pl.lit(None, dtype=pl.Int64).alias("total_bytes"),
            )
        )
    return pl.concat([p.cast(_QUERY_SCHEMA) for p in parts]).filter(
        pl.col("free_bytes").is_not_null() & (pl.col("free_bytes") > 0)
    )


def _candidates(parts: pl.DataFrame, min_bytes: int) -> pl.DataFrame:
    """Single large allocations and groups of several whose sum is large: cand, kind
    (single|group), group, ts_ns (the first allocation), pid, event, source, memory, bytes,
    allocations, epoch and lead (of the first allocation)."""
    singles = parts.filter(pl.col("bytes") >= min_bytes).select(
        pl.lit("single").alias("kind"),
        "file",
        "group",
        "ts_ns",
        "pid",
        "event",
        "source",
        "memory",
        "bytes",
        pl.lit(1, dtype=pl.UInt32).alias("allocations"),
        "epoch",
        "lead",
    )
    events = pl.col("event").unique(maintain_order=True).str.join("+")
    groups = (
        parts.group_by("group")
        .agg(
            pl.col("file").first(),
            pl.col("ts_ns").first(),
            pl.col("pid").first(),
            pl.format("{} x {}", pl.len(), events).alias("event"),
            pl.col("source").first(),
            pl.col("memory").first(),
            pl.col("bytes").sum(),
            pl.len().alias("allocations"),
            pl.col("epoch").first(),
            pl.col("lead").first(),
        )
        .filter((pl.col("allocations") >= 2) & (pl.col("bytes") >= min_bytes))
        .select(pl.lit("group").alias("kind"), *singles.columns[1:])
    )
    return pl.concat([singles, groups]).sort("file", "ts_ns", "kind").with_row_index("cand")


def _fits(pairs: pl.DataFrame, tolerance: float) -> pl.DataFrame:
    """Each candidate x signal x rule at its nearest known fraction: the pair's columns and
    rule, implied, base, fraction, miss, residual_bytes, fits."""
    # the cross join with the fractions on the few columns it needs: x23 rows of all the
    # pairs' columns took ~100 MB over 200 recordings
    per_rule = pl.concat(
        [
            pairs.select(
                "cand",
                "signal",
                pl.lit(rule).alias("rule"),
                implied_fraction(rule).alias("implied"),
                base(rule).alias("base"),
            )
            for rule in RULES
        ]
    ).filter(pl.col("implied").is_not_null() & pl.col("implied").is_finite())
    fractions = pl.DataFrame({"fraction": list(KNOWN_FRACTIONS)})
    return (
        per_rule.join(fractions, how="cross")
        .with_columns((pl.col("implied") - pl.col("fraction")).abs().alias("miss"))
        .sort("miss")
        .group_by("cand", "signal", "rule", maintain_order=True)
        .first()
        .with_columns(
            (pl.col("miss") * pl.col("base")).round().cast(pl.Int64).alias("residual_bytes"),
            (pl.col("miss") <= tolerance).alias("fits"),
        )
        .join(pairs, on=["cand", "signal"], how="left", maintain_order="left")
    )


def _windows(pairs: pl.DataFrame) -> pl.DataFrame:
    """Every size a rule at a known fraction gives a candidate from one signal's answer: cand,
    rule, fraction, predicted. A size within r of one of them fits with residual r."""
    grid = pairs.select("cand", "free_bytes", "total_bytes", "used_bytes").join(
        pl.DataFrame({"fraction": list(KNOWN_FRACTIONS)}), how="cross"
    )
    return pl.concat(
        [
            grid.select(
                "cand",
                pl.lit(rule).alias("rule"),
                "fraction",
                predicted_bytes(rule).alias("predicted"),
            )
            for rule in RULES
        ]
    ).filter(pl.col("predicted").is_not_null())


def _ranges(pairs: pl.DataFrame, min_bytes: int) -> pl.DataFrame:
    """cand, lo, hi: the sizes a large allocation of that memory could have had, from min_bytes
    to the most that memory holds (the largest total -- else free -- a signal of the same memory
    reported: device or host; any signal's where none did), and at least its own size."""
    device = pl.col("signal").is_in(sorted(DEVICE_SIGNALS)) == (pl.col("memory") == "device")
    held = pl.coalesce("total_bytes", "free_bytes")
    return (
        pairs.group_by("cand")
        .agg(
            held.filter(device).max().alias("same"),
            held.max().alias("any"),
            pl.col("bytes").first(),
        )
        .select(
            "cand",
            pl.lit(min_bytes, dtype=pl.Int64).alias("lo"),
            pl.max_horizontal(pl.coalesce("same", "any"), "bytes", pl.lit(min_bytes + PAGE))
            .cast(pl.Int64)
            .alias("hi"),
        )
    )


def _chance(fits: pl.DataFrame, windows: pl.DataFrame, ranges: pl.DataFrame) -> pl.DataFrame:
    """`fits` with `chance`: the share of the candidate's plausible sizes (`_ranges`, uniform)
    within the fit's residual (at least a page) of some prediction (`_windows`): how often a
    size drawn at random would fit some rule as closely (the look-elsewhere effect counted).
    When the run's framework is known and the fit is that framework's rule (`own_rule`), only
    that rule's predictions were open, and only its default fraction when the fit is at it
    (`at_default`): the evidence named them before the size was looked at. The run's
    framework is in the columns fw_rule and fw_default (null: none known)."""
    own = (pl.col("rule") == pl.col("fw_rule")).fill_null(False)
    at_default = own & (pl.col("fraction") == pl.col("fw_default")).fill_null(False)
    fits = fits.with_row_index("fit").with_columns(
        own.alias("own_rule"), at_default.alias("at_default")
    )
    half = pl.max_horizontal("residual_bytes", pl.lit(PAGE))
    lo, hi = pl.col("lo"), pl.col("hi")
    open_ = (~pl.col("own_rule") | (pl.col("rule") == pl.col("fit_rule"))) & (
        ~pl.col("at_default") | (pl.col("fraction") == pl.col("fit_fraction"))
    )
    spans = (
        fits.select(
            "fit",
            "cand",
            "own_rule",
            "at_default",
            "residual_bytes",
            pl.col("rule").alias("fit_rule"),
            pl.col("fraction").alias("fit_fraction"),
        )
        .join(windows, on="cand")
        .filter(open_)
        .join(ranges, on="cand")
        .select(
            "fit",
            "lo",
            "hi",
            (pl.col("predicted") - half).clip(lo, hi).alias("start"),
            (pl.col("predicted") + half).clip(lo, hi).alias("end"),
        )
        .sort("fit", "start")
    )
    # the union of the windows: each adds what lies beyond the furthest end before it
    reached = pl.col("end").cum_max().shift(1).over("fit")
    covered = (pl.col("end") - pl.max_horizontal("start", reached)).clip(lower_bound=0)
    chance = (
        spans.with_columns(covered.alias("covered"))
        .group_by("fit")
        .agg((pl.col("covered").sum() / (hi - lo).first()).alias("chance"))
    )
    return fits.join(chance, on="fit", how="left").drop("fit")


def _judged(best: pl.DataFrame) -> pl.DataFrame:
    """The best fits that are the sizing: stated by the framework's log (its size in column
    log_bytes, within 1% or TIE_BYTES, as `_what`), or unlikely by chance (CHANCE_MAX;
    CHANCE_CORROBORATED for an allocation made right after its query)."""
    close = pl.max_horizontal(pl.lit(TIE_BYTES), pl.col("bytes") // 100)
    logged = ((pl.col("bytes") - pl.col("log_bytes")).abs() <= close).fill_null(False)
    limit = pl.when(pl.col("just_after")).then(CHANCE_CORROBORATED).otherwise(CHANCE_MAX)
    return best.with_columns(logged.alias("logged")).filter(
        pl.col("logged") | (pl.col("chance") <= limit)
    )


def _fit_structs(frame: pl.DataFrame) -> pl.Expr:
    return pl.struct(
        "rule",
        "fraction",
        "signal",
        "residual_bytes",
        pl.col("implied").round(6).alias("implied_fraction"),
        pl.col("chance").round_sig_figs(3),
    )


@dataclass
class SizingInputs:
    """What one recording contributes to a fit (`fit_many` fits many recordings in one pass):
    its allocation parts in scope, its memory queries, each process's device-memory peak so
    far, the framework it is and its log's KV statement."""

    parts: pl.DataFrame
    queries: pl.DataFrame
    peaks: pl.DataFrame
    framework: dict[str, Any] | None
    log_kv: dict[str, Any] | None


def sizing_inputs(
    run: RunData,
    min_bytes: int = DEFAULT_MIN_ALLOC,
    parts: pl.DataFrame | None = None,
    framework: dict[str, Any] | None = None,
    log: dict[str, Any] | None = None,
) -> SizingInputs | None:
    """One recording's inputs, or None when it made no allocation that could be a candidate
    (`parts`, `framework`, `log` when the caller has them already)."""
    if parts is None:
        parts, _ = split_by_scope(run, allocation_parts(run, min_bytes))
        framework, log = identify_framework(run), log_kv(run)
    if parts.is_empty():
        return None
    return SizingInputs(
        parts,
        memory_queries(run),
        process_device_peak_before(run),
        framework,
        log,
    )


@dataclass
class _Fitted:
    """The candidates and the fits judged to be their sizing (`best`: one row per candidate
    sized, with chance and evidence flags); `pairs` and `nearest` for the report's detail. With
    a `file` column: the index of the recording in `fit_many`'s list."""

    cands: pl.DataFrame
    pairs: pl.DataFrame
    best: pl.DataFrame
    nearest: pl.DataFrame | None


def _tagged(frames: list[tuple[int, pl.DataFrame]], schema: dict[str, Any]) -> pl.DataFrame:
    """The frames of many recordings as one, each row tagged with its recording's `file`."""
    return pl.concat(
        [f.cast(schema).with_columns(pl.lit(i, dtype=pl.UInt32).alias("file")) for i, f in frames]
    )


def _fit_many(
    inputs: list[SizingInputs | None], min_bytes: int, tolerance: float, *, shown: bool
) -> _Fitted | None:
    """Fit every candidate of every recording in one pass (each step is one polars operation
    for all of them: per recording, its fixed cost dominated). `shown`: also every fit's
    chance, `also_fits` and `nearest` (the report's), else only the best fit's (a summary's:
    the same judgement, less work)."""
    given = [(i, x) for i, x in enumerate(inputs) if x is not None]
    if not given:
        return None
    parts = _tagged([(i, x.parts) for i, x in given], _PART_SCHEMA)
    queries = _tagged([(i, x.queries) for i, x in given], _QUERY_SCHEMA).sort("q_ts_ns")
    peaks = _tagged([(i, x.peaks) for i, x in given], _PEAK_SCHEMA)
    known = pl.DataFrame(
        {
            "file": [i for i, _ in given],
            "fw_rule": [framework_rule(x.framework) for _, x in given],
            "fw_default": [
                DEFAULT_FRACTION.get(x.framework["name"]) if x.framework else None
                for _, x in given
            ],
            "log_bytes": [(x.log_kv or {}).get("bytes") or None for _, x in given],
        },
        schema={"file": pl.UInt32, "fw_rule": pl.String, "fw_default": pl.Float64,
                "log_bytes": pl.Int64},
    )  # fmt: skip
    cands = _candidates(group_allocations(parts, queries), min_bytes)
    if cands.is_empty():
        return None

    # each candidate x each signal of its recording -> that signal's last query before it,
    # same process; the device memory the process had held at most up to that query (vLLM's
    # "used")
    signals = queries.select("file", "signal").unique()
    pairs = (
        cands.join(signals, on="file")
        .sort("ts_ns")
        .join_asof(
            queries,
            left_on="ts_ns",
            right_on="q_ts_ns",
            by=["file", "pid", "signal"],
            strategy="backward",
            check_sortedness=False,
        )
        .filter(pl.col("q_ts_ns").is_not_null())
        .with_columns(pl.col("pid").fill_null(NO_PID).alias("pkey"))
        .sort("q_ts_ns")
    )
    peaks = peaks.rename({"pid": "pkey", "ts_ns": "p_ts_ns"})
    if peaks.is_empty():
        pairs = pairs.with_columns(pl.lit(0, dtype=pl.Int64).alias("used_bytes"))
    else:
        pairs = pairs.join_asof(
            peaks.sort("p_ts_ns"),
            left_on="q_ts_ns",
            right_on="p_ts_ns",
            by=["file", "pkey"],
            strategy="backward",
            check_sortedness=False,
        ).with_columns(pl.col("peak_so_far").fill_null(0).clip(lower_bound=0).alias("used_bytes"))
    pairs = pairs.join(known, on="file", how="left").select(
        "file",
        "cand",
        "signal",
        "q_ts_ns",
        "free_bytes",
        "total_bytes",
        "used_bytes",
        "bytes",
        "memory",
        # this query was the process's last before the allocation, which was its first after
        (pl.col("lead") & (pl.col("q_ts_ns") == pl.col("epoch"))).alias("just_after"),
        "fw_rule",
        "fw_default",
        "log_bytes",
    )
    fits = _fits(pairs, tolerance)
    windows, ranges = _windows(pairs), _ranges(pairs, min_bytes)
    if shown:
        fits = _chance(fits, windows, ranges)

    # the best fit: smallest residual; within TIE_BYTES of it the framework's rule, then the
    # simpler rule, then the closest fit, the latest query, the signal order above
    tied = pl.col("residual_bytes") > pl.col("residual_bytes").min().over("cand") + TIE_BYTES
    foreign = (pl.col("rule") != pl.col("fw_rule")).fill_null(False)
    ranked = (
        fits.filter(pl.col("fits"))
        .with_columns(
            tied.alias("not_tied"),
            foreign.alias("not_framework"),
            pl.col("rule").replace_strict(RULE_ORDER).alias("rule_rank"),
            pl.col("signal")
            .replace_strict(SIGNAL_ORDER, default=len(SIGNAL_ORDER))
            .alias("signal_rank"),
        )
        .sort(
            ["not_tied", "not_framework", "rule_rank", "residual_bytes", "q_ts_ns", "signal_rank"],
            descending=[False, False, False, False, True, False],
        )
    )
    if shown:
        best = ranked.group_by("cand", maintain_order=True).agg(
            pl.all().first(),
            _fit_structs(ranked)
            .slice(1)
            .sort_by(pl.col("residual_bytes").slice(1))
            .alias("also_fits"),
        )
        nearest = (
            fits.sort("residual_bytes")
            .group_by("cand", maintain_order=True)
            .agg(_fit_structs(fits).head(NEAREST).alias("nearest"))
        )
    else:
        best = _chance(ranked.group_by("cand", maintain_order=True).first(), windows, ranges)
        nearest = None
    return _Fitted(cands, pairs, _judged(best), nearest)


def _evidence(a: dict[str, Any], framework: dict[str, Any] | None) -> list[str]:
    """What, besides its chance, says a sized allocation's fit is no coincidence (the flags
    the table carried, removed from the row)."""
    flags = {f: a.pop(f) for f in ("logged", "own_rule", "at_default", "just_after")}
    if not a["explained"]:
        return []
    name = framework["name"] if framework else None
    said = [
        "the framework's log states this size" if flags["logged"] else None,
        f"{name} sizes by this rule ({framework['evidence']})"
        if flags["own_rule"] and framework
        else None,
        f"{a['fraction']:g} is {name}'s default" if flags["at_default"] else None,
        "allocated right after this query, nothing between" if flags["just_after"] else None,
        "residual under a page" if a["residual_bytes"] < PAGE else None,
    ]
    return [s for s in said if s]


def sized_allocations(
    inputs: list[SizingInputs | None],
    min_bytes: int = DEFAULT_MIN_ALLOC,
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[dict[str, Any] | None]:
    """For each recording's inputs (`sizing_inputs`), the allocation `infer_sizing` reports as
    `kv` (the same fit, judged the same way), with only bytes, rule, fraction, signal,
    query_free_bytes, residual_bytes and chance: what a summary row needs, without the report's
    context (headroom, signals, what-ifs). All recordings are fitted in one pass."""
    out: list[dict[str, Any] | None] = []
    for start in range(0, len(inputs), FIT_BATCH):
        out += _sized(inputs[start : start + FIT_BATCH], min_bytes, tolerance)
    return out


def _sized(
    inputs: list[SizingInputs | None], min_bytes: int, tolerance: float
) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = [None] * len(inputs)
    fitted = _fit_many(inputs, min_bytes, tolerance, shown=False)
    if fitted is None:
        return out
    table = fitted.cands.join(
        fitted.best.drop("file"), on="cand", how="left", suffix="_fit"
    ).select(
        "file",
        "cand",
        "kind",
        "group",
        "ts_ns",
        "bytes",
        pl.col("rule").is_not_null().alias("explained"),
        "rule",
        "signal",
        "fraction",
        "residual_bytes",
        pl.col("free_bytes").alias("query_free_bytes"),
        "chance",
    )
    for (file,), rows in table.sort("cand").partition_by("file", as_dict=True).items():
        explained = [a for a in _listed(rows.drop("file").to_dicts()) if a["explained"]]
        out[int(file)] = max(explained, key=lambda a: a["bytes"]) if explained else None
    return out


def sized_allocation(
    run: RunData,
    min_bytes: int = DEFAULT_MIN_ALLOC,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any] | None:
    """`sized_allocations` of one recording."""
    return sized_allocations([sizing_inputs(run, min_bytes)], min_bytes, tolerance)[0]


def infer_sizing(
    run: RunData,
    min_bytes: int = DEFAULT_MIN_ALLOC,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    parts, strangers = split_by_scope(run, allocation_parts(run, min_bytes))
    outside = _outside(run, strangers.filter(pl.col("bytes") >= min_bytes))
    framework = identify_framework(run)
    result: dict[str, Any] = {
        "allocations": [],
        "kv": None,
        "unknown": None,
        "framework": framework,
        "min_alloc_bytes": min_bytes,
        "tolerance": tolerance,
        "log_kv": log_kv(run),
        "log_unparsed": log_unparsed(run),
        "outside_command": outside,
    }
    inputs = sizing_inputs(run, min_bytes, parts, framework, result["log_kv"])
    fitted = _fit_many([inputs], min_bytes, tolerance, shown=True)
    if fitted is None:
        return result
    cands, pairs, best, nearest = fitted.cands, fitted.pairs, fitted.best, fitted.nearest
    assert nearest is not None

    # what the process could really use at the allocation instant
    context = _with_cgroup(cands, run)
    context = _at(context, headroom_series(run), "ts_ns", by="cgroup_id")
    for item in ("MemAvailable", "MemFree"):
        context = _at(context, meminfo_series(run, item), "ts_ns")

    detail = pairs.join(
        context.select("cand", "headroom", "MemAvailable"), on="cand", how="left"
    ).with_columns(
        rel_s("q_ts_ns", run.t0_ns).alias("query_t_s"),
        (pl.col("bytes") / pl.col("free_bytes")).round(6).alias("ratio"),
        (pl.col("free_bytes") - pl.col("headroom")).alias("minus_headroom"),
        (pl.col("free_bytes") - pl.col("MemAvailable")).alias("minus_mem_available"),
    )
    signal_cols = [
        "signal",
        "query_t_s",
        "free_bytes",
        "total_bytes",
        "ratio",
        "minus_headroom",
        "minus_mem_available",
    ]
    per_cand = detail.group_by("cand").agg(
        pl.struct(signal_cols)
        .sort_by(["q_ts_ns", "signal"], descending=[True, False])
        .alias("signals")
    )
    table = (
        context.join(best, on="cand", how="left", suffix="_fit")
        .join(nearest, on="cand", how="left")
        .join(per_cand, on="cand", how="left")
        .sort("cand")
        .select(
            "cand",
            "kind",
            "group",
            rel_s("ts_ns", run.t0_ns).alias("t_s"),
            "ts_ns",
            "pid",
            "event",
            "source",
            "bytes",
            "allocations",
            pl.col("rule").is_not_null().alias("explained"),
            "rule",
            "signal",
            "fraction",
            pl.col("implied").round(6).alias("ratio"),
            "residual_bytes",
            pl.col("chance").round_sig_figs(3),
            *[pl.col(c).fill_null(False) for c in ("logged", "own_rule", "at_default")],
            pl.col("just_after").fill_null(False),
            rel_s("q_ts_ns", run.t0_ns).alias("query_t_s"),
            pl.col("q_ts_ns").alias("query_ts_ns"),
            pl.col("free_bytes").alias("query_free_bytes"),
            pl.col("total_bytes").alias("query_total_bytes"),
            "used_bytes",
            pl.col("also_fits").fill_null([]),
            pl.col("nearest").fill_null([]),
            "cgroup_id",
            pl.col("headroom").alias("headroom_bytes"),
            pl.col("MemAvailable").alias("mem_available_bytes"),
            pl.col("MemFree").alias("mem_free_bytes"),
            pl.col("signals").fill_null([]),
        )
    )
    rows = _listed(table.to_dicts())
    for a in rows:
        a["evidence"] = _evidence(a, framework)
        a["cgroup"] = run.cgroup_name(a["cgroup_id"])
        a["what"] = _what(a, framework, result["log_kv"])
        a["framework"] = framework["name"] if framework else None
    result["allocations"] = rows
    explained = [a for a in rows if a["explained"]]
    kv = max(explained, key=lambda a: a["bytes"]) if explained else None
    if kv is not None:
        kv["what_if"] = _what_if(kv, _own_page_cache(run, kv))
        kv["memory_limit"] = limit_at_query(run, kv)
    elif rows:
        top = max(rows, key=lambda a: a["bytes"])
        result["unknown"] = {
            "rule": UNKNOWN,
            "bytes": top["bytes"],
            "allocations": top["allocations"],
            "event": top["event"],
            "pid": top["pid"],
            "t_s": top["t_s"],
            "nearest": top["nearest"],
        }
    result["kv"] = kv
    return result


def _listed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates a reader sees: every single large allocation, and a group where it is
    the better explanation -- then it replaces its members -- or where it is the only view of
    that memory (no member is large by itself). A group that fits is the better explanation
    unless one of its members fits closer by more than TIE_BYTES: a sum of allocations that
    fits a rule is rarely chance, while one of 8 per-layer tensors fits f/8 whenever that is a
    known fraction (0.8 / 8 = 0.1)."""
    singles: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r["kind"] == "single":
            singles.setdefault(r["group"], []).append(r)
    out: list[dict[str, Any]] = []
    replaced: set[int] = set()
    for r in rows:
        if r["kind"] != "group":
            continue
        members = singles.get(r["group"], [])
        fitted = [m["residual_bytes"] for m in members if m["explained"]]
        better = r["explained"] and all(r["residual_bytes"] <= res + TIE_BYTES for res in fitted)
        if better or not members:
            out.append(r)
            if better:
                replaced.add(r["group"])
    out += [r for r in rows if r["kind"] == "single" and r["group"] not in replaced]
    for r in out:
        del r["cand"], r["group"], r["kind"]
    return sorted(out, key=lambda r: r["ts_ns"])


def _what(a: dict[str, Any], framework: dict[str, Any] | None, logged: dict | None) -> str:
    """A KV cache or a pool only on evidence: the framework's own log line about its KV cache,
    or the known rule of the framework the run is; otherwise a large allocation."""
    if not a["explained"]:
        return "large allocation"
    if (
        logged is not None
        and logged.get("bytes")
        and abs(logged["bytes"] - a["bytes"]) <= max(TIE_BYTES, a["bytes"] // 100)
    ):
        return "KV cache"
    if framework is not None:
        rule, what = FRAMEWORK_RULE.get(framework["name"], (None, None))
        if rule == a["rule"] and what:
            return what
    return "large allocation"


def _outside(run: RunData, strangers: pl.DataFrame) -> list[dict[str, Any]]:
    """Large allocations of processes outside the traced command: never KV candidates, listed
    so a reader sees what was left out (pid, comm, event, bytes, t_s)."""
    if strangers.is_empty():
        return []
    pids = strangers["pid"].unique().drop_nulls().implode()
    named = [
        run.proc.filter(pl.col("pid").is_in(pids) & pl.col("comm").is_not_null()),
        run.charges.filter(pl.col("pid").is_in(pids) & pl.col("comm").is_not_null()),
    ]
    comm_of: dict[int, str] = {}
    for frame in reversed(named):  # the proc stream's name (after exec) wins
        comm_of |= dict(
            frame.group_by("pid").agg(pl.col("comm").cast(pl.String).last()).iter_rows()
        )
    return [
        {
            "t_s": run.rel_s(r["ts_ns"]),
            "pid": r["pid"],
            "comm": comm_of.get(r["pid"]),
            "event": r["event"],
            "bytes": r["bytes"],
        }
        for r in strangers.sort("ts_ns").iter_rows(named=True)
    ]


def _what_if(kv: dict[str, Any], own_page_cache: int | None) -> list[dict[str, Any]]:
    """The size the same rule would have given with each other signal's answer, and with the
    signal's own answer had the command's page cache been dropped first (a MemFree-like signal
    counts it as used). Empty for a rule that does not read free memory."""
    rule, f = kv["rule"], kv["fraction"]
    if not reads_free(rule):
        return []
    values = {s["signal"]: s["free_bytes"] for s in kv["signals"]}
    values.setdefault("MemAvailable (at the allocation)", kv["mem_available_bytes"])
    values.setdefault("MemFree (at the allocation)", kv["mem_free_bytes"])
    values.setdefault("cgroup headroom (at the allocation)", kv["headroom_bytes"])
    if own_page_cache and kv["query_free_bytes"] is not None:
        name = f"{kv['signal']} + the command's own page cache, dropped before sizing"
        values[name] = kv["query_free_bytes"] + own_page_cache
    total, used = kv["query_total_bytes"], kv["used_bytes"] or 0
    out = []
    for name, v in values.items():
        size = None if v is None else rule_predicted(rule, f, v, total, used)
        if size is not None:
            out.append({"signal": name, "value_bytes": v, "kv_bytes": size})
    return out


def _own_page_cache(run: RunData, kv: dict[str, Any]) -> int | None:
    """Page cache (shmem excluded) charged to the command's cgroups at the sizing query, when
    the signal counts system memory: what `echo 1 > drop_caches` for its files would free.
    None for a device-memory signal on a discrete GPU, which page cache does not move."""
    from uvmtrace.analysis.host_memory import host_memory_at

    unified = bool(run.meta.gpu.unified_memory)
    if kv["signal"] not in SYSTEM_SIGNALS and not unified:
        return None
    held = host_memory_at(run, kv["query_ts_ns"])
    return (held or {}).get("by_kind", {}).get("file") or None


def log_unparsed(run: RunData, examples: int = 3) -> dict[str, Any]:
    """The framework lines that named the KV cache with a figure in a format uvmtrace does not
    know (`log_unparsed`): counted, so that a missed statement is never a silent one."""
    lines = run.logs.filter(pl.col("event") == "log_unparsed").sort("ts_ns")
    return {
        "count": lines.height,
        "examples": lines.head(examples).get_column("text").to_list(),
    }


def log_kv(run: RunData) -> dict[str, Any] | None:
    """The framework's own statement of its KV cache (last `kv_cache` log line), if any."""
    lines = run.logs.filter((pl.col("event") == "kv_cache") & pl.col("bytes").is_not_null())
    if lines.is_empty():
        return None
    row = lines.sort("ts_ns").tail(1).to_dicts()[0]
    return {
        "t_s": run.rel_s(row["ts_ns"]),
        "framework": row["item"],
        "bytes": row["bytes"],
        "text": row["text"],
    }
