"""The report's tables as (title, header, rows of strings): one definition shared by the terminal
and Markdown renderers, so both always show the same numbers."""

from __future__ import annotations

from typing import Any

from uvmtrace.analysis.items import KIND_LABEL
from uvmtrace.analysis.units import fmt_bytes, fmt_s

Table = tuple[str, list[str], list[list[str]]]


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _largest(allocs: list[dict[str, Any]], n: int = 20) -> list[dict[str, Any]]:
    """The KV allocation and the other largest ones, in time order (a table, not a dump)."""
    keep = sorted(allocs, key=lambda a: (not a["explained"], -a["bytes"]))[:n]
    return sorted(keep, key=lambda a: a["ts_ns"])


def _own_files_row(own: dict[str, Any] | None) -> list[list[str]]:
    """uvmtrace's own files (shim records, spool) as one line under the workload's files."""
    if not own:
        return []
    return [
        [
            f"uvmtrace's own files ({own['files']})",
            "",
            fmt_bytes(own["peak"]),
            fmt_bytes(own["end"]),
            fmt_bytes(own["mapped_bytes"]),
        ]
    ]


def cuda_memory_tables(cm: dict[str, Any] | None) -> list[Table]:
    """Where CUDA memory went: by kind, by calling library, by process (peak and end)."""
    if not cm or not cm.get("traced"):
        return []
    device = f"device + vmm + pool: peak {fmt_bytes(cm['device_bytes_peak'])}"
    return [
        (
            f"CUDA memory by kind ({device}, end {fmt_bytes(cm['device_bytes_end'])})",
            ["kind", "peak", "end"],
            [
                [r["kind"], fmt_bytes(r["peak_bytes"]), fmt_bytes(r["end_bytes"])]
                for r in cm["by_kind"]
            ],
        ),
        (
            "CUDA memory by calling library",
            ["library", "peak", "end"],
            [
                [r["caller"], fmt_bytes(r["peak_bytes"]), fmt_bytes(r["end_bytes"])]
                for r in cm["by_caller"]
            ],
        ),
        (
            "CUDA memory by process",
            ["pid", "process", "device peak", "device end", "by kind (end)"],
            [
                [
                    str(p["pid"]),
                    p["comm"] or "",
                    fmt_bytes(p["device_peak_bytes"]),
                    fmt_bytes(p["device_end_bytes"]),
                    ", ".join(f"{k['kind']} {fmt_bytes(k['end_bytes'])}" for k in p["by_kind"]),
                ]
                for p in cm["by_process"]
            ],
        ),
    ]


def baseline_tables(b: dict[str, Any]) -> list[Table]:
    """The starting state of an attached recording: what the targets held before tracing."""
    files = b["files"]
    return [
        (
            "Starting state: the targets' cgroups (memory.stat at attach; * = shared)",
            ["cgroup", "key", "at attach", "at end", "change"],
            [
                [
                    r["cgroup"] + (" *" if r["shared"] else ""),
                    r["key"],
                    fmt_bytes(r["at_attach"]),
                    fmt_bytes(r["at_end"]),
                    fmt_bytes(r["change"], signed=True),
                ]
                for r in b["cgroups"]
            ],
        ),
        (
            "Starting state: processes (smaps_rollup at attach)",
            ["pid", "comm", "rss", "anon", "file (pss)", "shmem (pss)"],
            [
                [str(r["pid"]), r["comm"] or ""]
                + [fmt_bytes(r[k]) for k in ("rss", "anon", "file_pss", "shmem_pss")]
                for r in b["processes"]
            ],
        ),
        (
            f"Starting state: page cache of their files ({files['count']} files, "
            f"{fmt_bytes(files['resident'])} resident; largest)",
            ["file", "resident", "size", "held"],
            [
                [f["path"], fmt_bytes(f["resident"]), fmt_bytes(f["size"]), f["held_as"]]
                for f in files["largest"]
            ],
        ),
    ]


def report_tables(rep: dict[str, Any]) -> list[Table]:
    att, sz, rc = rep["attribution"], rep["sizing"], rep["reconciliation"]
    t: list[Table] = []
    t.append(
        (
            "Phases",
            ["phase", "t", "what"],
            [
                [
                    p["name"],
                    fmt_s(p["t_s"]),
                    p["detail"] + (f" ({fmt_bytes(p['bytes'])})" if p["bytes"] else ""),
                ]
                for p in rep["phases"]
            ],
        )
    )
    if rep.get("baseline"):
        t += baseline_tables(rep["baseline"])
    t.append(
        (
            "Charged by cgroup (since start)",
            ["cgroup", "peak", "at", "end"],
            [
                [r["name"], fmt_bytes(r["peak"]), fmt_s(r["peak_t_s"]), fmt_bytes(r["end"])]
                for r in att["by_cgroup"]
            ],
        )
    )
    t.append(
        (
            "Charged by kind (non-overlapping)",
            ["kind", "peak", "at", "end"],
            [
                [
                    KIND_LABEL.get(r["kind"], r["kind"]),
                    fmt_bytes(r["peak"]),
                    fmt_s(r["peak_t_s"]),
                    fmt_bytes(r["end"]),
                ]
                for r in att["by_kind"]
            ],
        )
    )
    t.append(
        (
            "Charged by item (as recorded; * = in totals)",
            ["item", "peak", "end"],
            [
                [
                    r["item"] + (" *" if r["in_total"] else ""),
                    fmt_bytes(r["peak"]),
                    fmt_bytes(r["end"]),
                ]
                for r in att["by_item"]
            ],
        )
    )
    t.append(
        (
            "Charged by process",
            ["pid", "comm", "peak", "end"],
            [
                [str(r["pid"]), r.get("comm") or "", fmt_bytes(r["peak"]), fmt_bytes(r["end"])]
                for r in att["by_process"][:15]
            ],
        )
    )
    t.append(
        (
            "Files (page cache; mapped)",
            ["file", "cgroup", "peak cached", "end cached", "mapped"],
            [
                [
                    r["path"],
                    r["cgroup"] or "",
                    fmt_bytes(r["peak"]),
                    fmt_bytes(r["end"]),
                    fmt_bytes(r["mapped_bytes"]),
                ]
                for r in att["by_file"][:15]
            ]
            + _own_files_row(att.get("own_files")),
        )
    )
    t.append(
        (
            "Large allocations and the queries before them",
            [
                "t",
                "pid",
                "call",
                "bytes",
                "rule",
                "signal",
                "fraction",
                "residual",
                "headroom",
                "MemAvailable",
            ],
            [
                [
                    fmt_s(a["t_s"]),
                    str(a["pid"]),
                    a["event"],
                    fmt_bytes(a["bytes"]),
                    a["rule"] or "unknown",
                    f"{a['signal']} @ {fmt_s(a['query_t_s'])}" if a["explained"] else "",
                    f"{a['fraction']:g}" if a["fraction"] else "",
                    fmt_bytes(a["residual_bytes"]) if a["explained"] else "",
                    fmt_bytes(a["headroom_bytes"]),
                    fmt_bytes(a["mem_available_bytes"]),
                ]
                for a in sz["allocations"]
            ],
        )
    )
    if sz["kv"]:
        kv = sz["kv"]
        t.append(
            (
                f"Signals before the {kv['what']}",
                ["signal", "t", "value", "bytes/value", "- cgroup headroom", "- MemAvailable"],
                [
                    [
                        s["signal"],
                        fmt_s(s["query_t_s"]),
                        fmt_bytes(s["free_bytes"]),
                        _ratio(s["ratio"]),
                        fmt_bytes(s["minus_headroom"], signed=True),
                        fmt_bytes(s["minus_mem_available"], signed=True),
                    ]
                    for s in kv["signals"]
                ],
            )
        )
        t.append(
            (
                f"What if ({kv['rule']} {kv['fraction']:g} with each signal)",
                ["signal", "value", "KV would be"],
                [
                    [w["signal"], fmt_bytes(w["value_bytes"]), fmt_bytes(w["kv_bytes"])]
                    for w in kv["what_if"]
                ],
            )
        )
        t.append(advice_table(rep.get("advice"), "Advice: what would have given a larger KV"))
    t += cuda_memory_tables(rep.get("cuda_memory"))
    t.append(
        (
            "Reconciliation: eBPF charges vs memory.stat (first to last sample)",
            ["cgroup", "stat key", "item", "memory.stat change", "traced", "difference"],
            [
                [
                    r["cgroup"],
                    r["key"],
                    r["item"],
                    fmt_bytes(r["stat_delta"], signed=True),
                    fmt_bytes(r["traced_delta"], signed=True),
                    fmt_bytes(r["difference"], signed=True),
                ]
                for r in rc["memcg"]
            ],
        )
    )
    t.append(host_charge_table((rep.get("cuda_memory") or {}).get("host_charges") or []))
    t.append(
        (
            "Reconciliation: page faults vs /proc/PID/stat",
            ["pid", "traced", "pinned in kernel", "/proc", "/proc read"],
            [
                [
                    str(r["pid"]),
                    str(r["traced_faults"]),
                    str(r.get("pinned_faults", 0)),
                    str(r["proc_faults"]),
                    "at exit" if r.get("exact", True) else "while running (a lower bound)",
                ]
                for r in rc["faults"]
            ],
        )
    )
    nv = rc["cuda_vs_nvml"]
    extra = (
        [
            [
                "CUDA device allocations vs NVML used",
                fmt_bytes(nv["cuda_net_bytes"], signed=True),
                fmt_bytes(nv["nvml_used_delta"], signed=True),
            ]
        ]
        if nv
        else []
    )
    extra += [[f"lost events: {k}", str(v), ""] for k, v in rc["lost"].items()]
    extra += [
        [f"skipped by the kernel (nested, host-wide): {k}", str(v), ""]
        for k, v in rc.get("nested_skips", {}).items()
    ]
    extra += [
        [f"probe not attached: {p['probe']}", p["why"], ""] for p in rc["probes_not_attached"]
    ]
    if extra:
        t.append(("Reconciliation: other", ["check", "traced", "kernel/NVML"], extra))
    return t


def host_charge_table(rows: list[dict[str, Any]]) -> Table:
    """Every CUDA host-memory call and the kernel charges joined to it, with the rest."""
    return (
        "CUDA host memory -> kernel charges (same process and cgroup)",
        ["t", "pid", "call", "caller", "bytes", "charged", "as", "unmatched", "cgroup"],
        [
            [
                fmt_s(r["t_s"]),
                str(r["pid"]),
                r["call"],
                r["caller_module"] or "",
                fmt_bytes(r["bytes"]),
                fmt_bytes(r["charged_bytes"]),
                ", ".join(
                    f"{k} {fmt_bytes(v)}"
                    for k, v in sorted(r["items"].items(), key=lambda kv: -abs(kv[1]))
                ),
                fmt_bytes(r["unmatched_bytes"], signed=True) if r["bytes"] is not None else "",
                r["cgroup"] or "",
            ]
            for r in rows
        ],
    )


def _own_files_diff_row(dec: dict[str, Any]) -> list[list[str]]:
    own = dec.get("own_files")
    if not own or not (own["a_bytes"] or own["b_bytes"]):
        return []
    return [
        [
            "uvmtrace's own files",
            fmt_bytes(own["a_bytes"]),
            fmt_bytes(own["b_bytes"]),
            fmt_bytes(own["difference"], signed=True),
        ]
    ]


def advice_table(advice: dict[str, Any] | None, title: str) -> Table:
    """The ranked actions, each with what it recovers as measured, its risk and command."""
    rows = [
        [
            f"{a['rank']}. {a['action']}",
            fmt_bytes(a["recovers_bytes"]),
            fmt_bytes(a["kv_bytes"]),
            "" if a.get("gap_closed") is None else f"{a['gap_closed']:.0%}",
            a["risk"],
            _limit_cell(a),
            a["command"],
        ]
        for a in (advice or {}).get("actions") or []
    ]
    header = ["action", "recovers", "KV with it", "gap closed", "risk", "memory limit", "command"]
    return (title, header, rows)


def _limit_cell(a: dict[str, Any]) -> str:
    """Whether the action's KV fits under the KV cgroup's memory limit ('' without one)."""
    lim = a.get("memory_limit")
    if not lim:
        return ""
    if lim["fits"]:
        return f"fits ({fmt_bytes(lim['needs_bytes'])} of {fmt_bytes(lim['limit_bytes'])})"
    return f"DOES NOT FIT: needs {fmt_bytes(lim['needs_bytes'])} > {fmt_bytes(lim['limit_bytes'])}"


def diff_tables(d: dict[str, Any]) -> list[Table]:
    dec = d["decomposition"]
    t: list[Table] = []
    t.append(
        (
            "Phases (aligned)",
            ["phase", "A", "B", "matched"],
            [
                [p["name"], fmt_s(p["a_t_s"]), fmt_s(p["b_t_s"]), "yes" if p["matched"] else "NO"]
                for p in d["phases"]
            ],
        )
    )
    rows = []
    if dec["signal_difference_bytes"] is not None:
        rows.append(
            ["signal difference (A - B)", fmt_bytes(dec["signal_difference_bytes"], signed=True)]
        )
        if dec["baseline_bytes"] is not None:
            rows.append(
                [
                    "free memory before recording (A - B)",
                    fmt_bytes(dec["baseline_bytes"], signed=True),
                ]
            )
        if dec.get("per_cpu_free_bytes") is not None:
            rows.append(
                [
                    "free pages on per-CPU lists, not in MemFree (B - A)",
                    fmt_bytes(dec["per_cpu_free_bytes"], signed=True),
                ]
            )
        if dec["cuda_device_bytes"] is not None:
            rows.append(
                [
                    "CUDA device memory held (B - A)",
                    fmt_bytes(dec["cuda_device_bytes"], signed=True),
                ]
            )
    for k in dec["by_kind"]:
        rows.append([f"charged {k['label']} (B - A)", fmt_bytes(k["difference"], signed=True)])
    # the CUDA side, beside the charges (never added to them)
    for k in (dec.get("cuda") or {}).get("by_kind", []):
        rows.append([f"CUDA {k['key']} held (B - A)", fmt_bytes(k["difference"], signed=True)])
    if dec["unexplained_bytes"] is not None:
        rows.append(["unexplained", fmt_bytes(dec["unexplained_bytes"], signed=True)])
    host = dec.get("host_memory")
    if host:
        # a device-memory signal: the host side, which the signal does not count
        rows.append(
            [
                "host memory held (B - A), not in the signal",
                fmt_bytes(host["difference_bytes"], signed=True),
            ]
        )
        rows += [
            [f"  {KIND_LABEL.get(k, k)}", fmt_bytes(v, signed=True)]
            for k, v in host["by_kind"].items()
        ]
    t.append(
        (
            f"Decomposition at the {dec['at'].replace('_', ' ')} (A {fmt_s(dec['a_t_s'])}, "
            f"B {fmt_s(dec['b_t_s'])})",
            ["part", "bytes"],
            rows,
        )
    )
    t.append(advice_table(d.get("advice"), "Advice: what would have given B the KV size A got"))
    for title, key in (
        ("By cgroup", "by_cgroup"),
        ("By process", "by_process"),
        ("By file (page cache)", "by_file"),
    ):
        t.append(
            (
                f"{title}: charged at that instant",
                ["", "A", "B", "B - A"],
                [
                    [
                        str(r["key"]) + _removed_note(r),
                        fmt_bytes(r["a_bytes"]),
                        fmt_bytes(r["b_bytes"]),
                        fmt_bytes(r["difference"], signed=True),
                    ]
                    for r in dec[key][:15]
                ]
                + (_own_files_diff_row(dec) if key == "by_file" else []),
            )
        )
    t.append(
        (
            "Peak and end",
            ["what", "A peak", "B peak", "diff", "A end", "B end", "diff"],
            [
                [
                    r["what"],
                    fmt_bytes(r["a_peak"]),
                    fmt_bytes(r["b_peak"]),
                    fmt_bytes(r["peak_difference"], signed=True),
                    fmt_bytes(r["a_end"]),
                    fmt_bytes(r["b_end"]),
                    fmt_bytes(r["end_difference"], signed=True),
                ]
                for r in d["peak_end"]
            ],
        )
    )
    hc = d.get("host_charges") or {}
    kinds = sorted(set(hc.get("a") or {}) | set(hc.get("b") or {}))
    t.append(
        (
            "CUDA host memory and its kernel charges",
            ["kind", "A asked", "A charged", "B asked", "B charged", "charged B - A"],
            [
                [
                    k,
                    *(
                        fmt_bytes(((hc.get(side) or {}).get(k) or {}).get(f, 0))
                        for side in ("a", "b")
                        for f in ("bytes", "charged_bytes")
                    ),
                    fmt_bytes(
                        ((hc.get("b") or {}).get(k) or {}).get("charged_bytes", 0)
                        - ((hc.get("a") or {}).get(k) or {}).get("charged_bytes", 0),
                        signed=True,
                    ),
                ]
                for k in kinds
            ],
        )
    )
    kv = d["kv"]
    t.append(
        (
            "KV cache",
            ["", "A", "B", "B - A"],
            [
                [
                    "traced allocation",
                    fmt_bytes(kv["a_bytes"]),
                    fmt_bytes(kv["b_bytes"]),
                    fmt_bytes(kv["difference_bytes"], signed=True),
                ],
                ["framework log", fmt_bytes(kv["a_log_bytes"]), fmt_bytes(kv["b_log_bytes"]), ""],
            ],
        )
    )
    return t


def _removed_note(row: dict[str, Any]) -> str:
    """A cgroup removed before the compared instant is shown as it last lived, and says so."""
    gone = [f"{side.upper()} {fmt_s(row[f'{side}_removed_t_s'])}" for side in ("a", "b")
            if row.get(f"{side}_removed_t_s") is not None]  # fmt: skip
    return f" (removed; at its last sample: {', '.join(gone)})" if gone else ""
