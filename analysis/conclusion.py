"""The first lines of every report: what happened, in plain words, with the numbers."""

from __future__ import annotations

from typing import Any

from uvmtrace.analysis.advice import advice_line
from uvmtrace.analysis.items import DEVICE_SIGNALS, KIND_LABEL
from uvmtrace.analysis.sizing_rules import formula
from uvmtrace.analysis.units import fmt_bytes, fmt_s


def chance_text(chance: float) -> str:
    """`41%`, `1.3%`, `0.0028%`, `< 0.001%`."""
    if chance >= 0.1:
        return f"{chance:.0%}"
    return f"{chance * 100:.2g}%" if chance >= 1e-5 else "< 0.001%"


def fit_text(fit: dict[str, Any]) -> str:
    """`fraction_of_total 0.75 x cuMemGetInfo (residual 1.0 MiB, chance 0.0029%)`: the chance
    that a size at random fits some rule as closely (sizing.py)."""
    chance = fit.get("chance")
    odds = "" if chance is None else f", chance {chance_text(chance)}"
    return (
        f"{fit['rule']} {fit['fraction']:g} x {fit['signal']} "
        f"(residual {fmt_bytes(fit['residual_bytes'])}{odds})"
    )


def sizing_line(kv: dict[str, Any]) -> str:
    """What sized the largest explained allocation, by which rule, and how well it fits."""
    what = kv.get("what") or "large allocation"
    verb = "sized from" if what == "large allocation" else "sized by"
    rule = formula(
        kv["rule"],
        kv["fraction"],
        kv["query_free_bytes"],
        kv["query_total_bytes"],
        kv["used_bytes"],
    )
    line = (
        f"The {what} ({fmt_bytes(kv['bytes'])}, {kv['event']} by pid {kv['pid']} at "
        f"{fmt_s(kv['t_s'])}) was {verb} {kv['signal']}: {rule} at {fmt_s(kv['query_t_s'])} "
        f"(rule {kv['rule']}, residual {fmt_bytes(kv['residual_bytes'])}"
    )
    if kv.get("chance") is not None:
        line += f", chance {chance_text(kv['chance'])} that a size at random fits as closely"
    if kv.get("framework"):
        line += f"; {kv['framework']}'s rule" if what != "large allocation" else ""
    line += ")"
    if kv.get("also_fits"):
        line += ". Also within tolerance: " + ", ".join(fit_text(f) for f in kv["also_fits"][:3])
    return line + "."


def report_conclusion(rep: dict[str, Any]) -> list[str]:
    lines: list[str] = _baseline_lines(rep["baseline"]) if rep.get("baseline") else []
    rec = rep["run"].get("recovery")
    if rec is not None and rec["cut"]:
        lines.append(
            f"Recovered from the spool of a recording that was cut short ({rec['why']}): "
            "whatever happened after the cut is not in it."
        )
    elif rec is not None:
        lines.append("Recovered from the spool of a recording that was not closed; complete.")
    sizing = rep["sizing"]
    kv = sizing["kv"]
    if kv:
        lines.append(sizing_line(kv))
        ctx = []
        if kv["headroom_bytes"] is not None:
            ctx.append(
                f"the real headroom of {kv['cgroup']} was {fmt_bytes(kv['headroom_bytes'])} "
                f"({fmt_bytes(kv['query_free_bytes'] - kv['headroom_bytes'], signed=True)} "
                "in the signal)"
            )
        if kv["mem_available_bytes"] is not None:
            ctx.append(f"host MemAvailable was {fmt_bytes(kv['mem_available_bytes'])}")
        if ctx:
            lines.append("At that instant " + "; ".join(ctx) + ".")
    elif sizing["allocations"]:
        line = (
            f"No memory query explains any of the {len(sizing['allocations'])} large "
            f"allocation(s) (>= {fmt_bytes(sizing['min_alloc_bytes'])}): no sizing rule gives "
            "its size from an answer the process got before it more closely than a size at "
            "random would (rule: unknown)"
        )
        unknown = sizing.get("unknown") or {}
        if unknown.get("nearest"):
            line += (
                f"; nearest for the largest ({fmt_bytes(unknown['bytes'])}, {unknown['event']}): "
                + ", ".join(fit_text(n) for n in unknown["nearest"])
            )
        lines.append(line + ".")
    else:
        lines.append(
            f"No large allocation (>= {fmt_bytes(sizing['min_alloc_bytes'])}) was traced, so "
            "nothing to explain about KV sizing."
        )
    unexplained = [a for a in sizing["allocations"] if not a["explained"]]
    if kv and unexplained:
        lines.append(
            f"{len(unexplained)} other large allocation(s) are not explained by any query."
        )
    outside = sizing.get("outside_command") or []
    if outside:
        biggest = sorted(outside, key=lambda a: (-a["bytes"], a["t_s"]))[:3]
        named = ", ".join(
            f"{a['comm'] or 'pid'} {a['pid']} {a['event']} {fmt_bytes(a['bytes'])}" for a in biggest
        )
        lines.append(
            f"{len(outside)} large allocation(s) by processes outside the traced command were "
            f"not considered ({named}{', ...' if len(outside) > len(biggest) else ''})."
        )
    if sizing.get("log_kv") and kv:
        lk = sizing["log_kv"]
        lines.append(
            f"The framework's own log says {fmt_bytes(lk['bytes'])} of KV cache "
            f"({fmt_bytes(lk['bytes'] - kv['bytes'], signed=True)} vs the traced allocation)."
        )
    unparsed = (sizing.get("log_unparsed") or {}).get("count", 0)
    if unparsed:
        first = sizing["log_unparsed"]["examples"][0]
        lines.append(
            f"{unparsed} framework line{'s' if unparsed > 1 else ''} mentioned KV cache but "
            f"{'were' if unparsed > 1 else 'was'} not understood (first: {first!r})."
        )
    att = rep["attribution"]
    if att["by_cgroup"]:
        top = att["by_cgroup"][0]
        kinds = sorted(top["end_by_kind"].items(), key=lambda kv_: -abs(kv_[1]))
        kind_txt = ", ".join(f"{KIND_LABEL.get(k, k)} {fmt_bytes(v)}" for k, v in kinds[:3])
        line = (
            f"Most memory was charged to {top['name']}: peak {fmt_bytes(top['peak'])} at "
            f"{fmt_s(top['peak_t_s'])}, {fmt_bytes(top['end'])} at the end ({kind_txt})"
        )
        # the biggest file of that cgroup: a file some other process read elsewhere is no
        # part of this sentence
        files = [f for f in att["by_file"] if f["peak"] > 0 and f["cgroup_id"] == top["cgroup_id"]]
        if files:
            f = files[0]
            line += f"; biggest file in its page cache: {f['path']} {fmt_bytes(f['peak'])}"
        lines.append(line + ".")
    lines += host_charge_lines(rep)
    done = rep.get("reclaim")
    if done:
        lines.append(
            f"Reclaimed before sizing: {fmt_bytes(done['reclaimed_bytes'])} of clean page cache "
            f"in {done['seconds'] * 1e3:.1f} ms ({done['requests']} sizing quer"
            f"{'y' if done['requests'] == 1 else 'ies'})."
        )
    fix = advice_line(rep.get("advice"))
    if fix:
        lines.append(fix)
    for m in rep["run"]["missing"]:
        lines.append(f"Missing: {m}.")
    lines.append(rep["reconciliation"]["summary"]["line"])
    return lines


def _baseline_lines(b: dict[str, Any]) -> list[str]:
    """An attached recording: what it attached to, what was there already, what is missing."""
    what = ", ".join(
        f"{t['kind']} {(t.get('container') or {}).get('name') or t['given']}" for t in b["targets"]
    )
    held = [
        f"{r['cgroup']}{' (shared)' if r['shared'] else ''} {r['key']} {fmt_bytes(r['at_attach'])}"
        for r in b["cgroups"]
        if r["key"] in ("anon", "file", "rss", "cache")
    ]
    procs = b["processes"]
    anon = sum(p["anon"] or 0 for p in procs)
    line = (
        f"Attached at {fmt_s(b['attached_t_s'])} to {what}; ended: {b['ended'] or 'unknown'}. "
        "What happened before the attach is not in the recording: the starting state is the "
        f"baseline ({'; '.join(held) + '; ' if held else ''}{len(procs)} process(es) with "
        f"{fmt_bytes(anon)} anonymous; {fmt_bytes(b['files']['resident'])} of their "
        f"{b['files']['count']} files in the page cache)."
    )
    lines = [line]
    nxt = b.get("cuda_next_time")
    if nxt:
        line = f"CUDA calls were not traced ({nxt['why']}). Next time: {nxt['launch']}"
        if nxt.get("compose"):
            line += f"; or, in a compose file:\n{nxt['compose']}"
        lines.append(line + ".")
    return lines


def diff_conclusion(d: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    dec = d["decomposition"]
    sig = d["signal"]
    if sig is not None:
        name = sig["b_signal"] if sig["same_signal"] else f"{sig['a_signal']}/{sig['b_signal']}"
        delta = sig["difference_bytes"]
        word = "lower" if delta >= 0 else "higher"
        head = (
            f"B's {name} free at the KV-sizing call was {fmt_bytes(abs(delta))} {word} "
            f"({fmt_bytes(sig['a_free_bytes'])} in A, {fmt_bytes(sig['b_free_bytes'])} in B)"
        )
        parts = []
        if sig["device_memory"]:
            lines += _device_signal_lines(name, sig, dec, head)
        else:
            # a file is named when the command's cgroups hold it and it is a visible part of
            # the difference (not 4 KiB of a daemon's log against gigabytes)
            floor = abs(delta) // 100
            files = [
                f for f in dec["by_file"] if f["difference"] > floor and f.get("b_in_scope", True)
            ]
            # the top file is named on its own; the other charges are the kinds minus it
            top_file = files[0]["difference"] if files else 0
            remaining = {
                k["label"]: k["difference"] - (top_file if k["key"] == "file" else 0)
                for k in dec["by_kind"]
            }
            if files:
                f = files[0]
                where = f" charged to {f['b_cgroup']}" if f["b_cgroup"] else ""
                if f["b_cgroup_path"] and f["b_cgroup_path"] not in (f["b_cgroup"] or ""):
                    where += f" ({f['b_cgroup_path'][:24]}...)"
                when = (
                    f" between {fmt_s(f['b_first_t_s'])} and {fmt_s(f['b_last_t_s'])}"
                    if f["b_first_t_s"] is not None
                    else ""
                )
                parts.append(
                    f"{fmt_bytes(f['difference'])} of it is page cache of {f['key']}{where}{when}"
                )
            rest = dec["charged_difference_bytes"] - top_file
            if rest:
                detail = ", ".join(
                    f"{label} {fmt_bytes(v, signed=True)}" for label, v in remaining.items() if v
                )
                what = "other charges" if files else "charged memory"
                parts.append(f"{fmt_bytes(rest, signed=True)} {what} ({detail})")
            if dec["baseline_bytes"]:
                parts.append(
                    f"{fmt_bytes(dec['baseline_bytes'], signed=True)} less free memory "
                    "before the recordings started"
                )
            if dec.get("per_cpu_free_bytes"):
                parts.append(
                    f"{fmt_bytes(dec['per_cpu_free_bytes'], signed=True)} free pages parked on "
                    "per-CPU lists, which MemFree leaves out"
                )
            parts.append(f"{fmt_bytes(dec['unexplained_bytes'])} unexplained")
            lines.append(head + "; " + "; ".join(parts) + ".")
    else:
        lines.append(
            "No KV-sizing query was found in "
            + (
                "both runs"
                if d["kv"]["a_bytes"] is None and d["kv"]["b_bytes"] is None
                else ("A" if d["kv"]["a_bytes"] is None else "B")
            )
            + f"; charged memory compared at the end instead: B has "
            f"{fmt_bytes(dec['charged_difference_bytes'], signed=True)} vs A."
        )
    lines += _host_charge_diff_lines(d)
    kv = d["kv"]
    if kv["a_bytes"] is not None and kv["b_bytes"] is not None:
        what = "KV cache" if kv.get("what", "KV cache") == "KV cache" else "Sized allocation"
        if kv.get("what") == "preallocated pool":
            what = "Preallocated pool"
        lines.append(
            f"{what}: A {fmt_bytes(kv['a_bytes'])}, B {fmt_bytes(kv['b_bytes'])} "
            f"({fmt_bytes(kv['difference_bytes'], signed=True)})."
        )
    if d["unmatched_phases"]:
        lines.append("Phases that could not be matched: " + ", ".join(d["unmatched_phases"]) + ".")
    fix = advice_line(d.get("advice"))
    if fix:
        lines.append(fix)
    lines.append("A " + d["trust"]["a"][0].lower() + d["trust"]["a"][1:])
    lines.append("B " + d["trust"]["b"][0].lower() + d["trust"]["b"][1:])
    return lines


DISCRETE = "discrete GPU; metadata gpu.unified_memory false"


def _device_signal_lines(
    name: str, sig: dict[str, Any], dec: dict[str, Any], head: str
) -> list[str]:
    """A device-memory signal (cuMemGetInfo/NVML on a discrete GPU): the CUDA memory that moved
    it, and the negative control -- the host memory B held more, which it does not count."""
    if sig["difference_bytes"] == 0:
        same = fmt_bytes(sig["a_free_bytes"])
        head = f"B's {name} free at the KV-sizing call equals A's ({same})"
    else:
        head += (
            f"; {fmt_bytes(dec['cuda_device_bytes'])} of it is CUDA device memory B held; "
            f"{fmt_bytes(dec['unexplained_bytes'])} unexplained"
        )
    host = dec.get("host_memory")
    if host is None:
        return [
            f"{head}: this signal counts device memory only ({DISCRETE}); no host memory "
            "figures (kernel stream or memory.stat samples) to compare it with."
        ]
    held = host["difference_bytes"]
    kinds = sorted(host["by_kind"].items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    detail = ", ".join(f"{KIND_LABEL.get(k, k)} {fmt_bytes(v, signed=True)}" for k, v in kinds[:3])
    if held > 0:
        amount = f"{fmt_bytes(held, signed=True)} more host memory"
    elif held < 0:
        amount = f"{fmt_bytes(-held)} less host memory"
    else:
        amount = "as much host memory as A's"
    held_txt = f"B's cgroup held {amount}" + (f" ({detail})" if detail else "") + " at that moment"
    if sig["difference_bytes"] == 0 and held > 0:
        line = f"{head} although {held_txt}: this signal does not count host memory ({DISCRETE})."
    else:
        line = (
            f"{head}. {held_txt}, which this signal does not count "
            f"(a device-memory signal: {DISCRETE})."
        )
    return [line, f"Host memory from {host['source']}."]


HOST_CHARGE_LINES = 5  # the largest joins in words; the table lists every one
UNMATCHED_SHARE = 0.05  # a join this far from the call's size says how much is missing


def host_charge_lines(rep: dict[str, Any]) -> list[str]:
    """Each large CUDA host-memory call and the kernel charges it caused, in words; then, on a
    discrete GPU sized by a device-memory signal, that none of those charges could move it."""
    rows = (rep.get("cuda_memory") or {}).get("host_charges") or []
    lines = []
    big = sorted(rows, key=lambda r: -(r["bytes"] or r["charged_bytes"]))[:HOST_CHARGE_LINES]
    shown = sorted(big, key=_t)
    for r in shown:
        items = sorted(r["items"].items(), key=lambda kv_: -abs(kv_[1]))
        what = ", ".join(f"{fmt_bytes(v, signed=True)} {k}" for k, v in items) or "nothing"
        where = "" if not r["items"] else f" charged to {r['cgroup']}"
        size = "" if r["bytes"] is None else f" {fmt_bytes(r['bytes'])}"
        line = (
            f"{r['call']}{size} (pid {r['pid']}, {fmt_s(r['t_s'])}, "
            f"caller {r['caller_module'] or 'unknown'}) -> {what}{where}"
        )
        if r["kind"] == "managed" and r["items"]:
            line += " as the CPU touched it"
        rest = r["unmatched_bytes"]
        if rest is None:
            line += " (the driver's own buffers)"
        elif rest > UNMATCHED_SHARE * r["bytes"]:
            line += f" ({fmt_bytes(rest)} of its size not matched)"
        elif -rest > UNMATCHED_SHARE * r["bytes"]:
            line += f" ({fmt_bytes(-rest)} more than its size)"
        lines.append(line + ".")
    if len(rows) > len(shown):
        lines.append(f"{len(rows) - len(shown)} more CUDA host-memory call(s) in the table.")
    lost = sum(v for k, v in rep["reconciliation"]["lost"].items() if k.startswith("memcg"))
    if rows and lost:
        lines.append(f"{lost:,} memcg events were lost while recording: joins may fall short.")
    kv = rep["sizing"]["kv"]
    if kv and kv["signal"] in DEVICE_SIGNALS and rep["run"]["unified_memory"] is False:
        host = sum(max(r["charged_bytes"], 0) for r in rows)
        lines.append(
            f"The sizing signal {kv['signal']} counts device memory ({DISCRETE}): host charges "
            + (f"(the {fmt_bytes(host)} CUDA host memory above, " if host else "(")
            + "page cache, anything charged to the cgroups) cannot move it."
        )
    return lines


def _t(r: dict[str, Any]) -> float:
    return r["t_s"] if r["t_s"] is not None else 0.0


def _host_charge_diff_lines(d: dict[str, Any]) -> list[str]:
    """CUDA host memory the kernel charged in each run, when it differs: the part of B - A that
    is not page cache or the program's own anon, but a CUDA call's pinned/managed memory."""
    hc = d.get("host_charges") or {}
    a, b = hc.get("a") or {}, hc.get("b") or {}
    kinds = sorted(set(a) | set(b))
    diffs = {
        k: (b.get(k) or {}).get("charged_bytes", 0) - (a.get(k) or {}).get("charged_bytes", 0)
        for k in kinds
    }
    if not any(diffs.values()):
        return []
    total = sum(diffs.values())
    detail = ", ".join(f"{k} {fmt_bytes(v, signed=True)}" for k, v in diffs.items() if v)
    return [
        f"CUDA host memory charged by the kernel, B - A: {fmt_bytes(total, signed=True)} "
        f"({detail}; table 'CUDA host memory and its kernel charges')."
    ]
