"""Charts for the HTML report, drawn by matplotlib (Agg) into inline SVG strings."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from uvmtrace.analysis.units import GIB, KIB, MIB  # noqa: E402


def _unit(values: list[float]) -> tuple[int, str]:
    """The binary unit the largest value reads best in: a 150 MiB run is drawn in MiB, not on
    a 0.00-0.15 GiB axis."""
    top = max((abs(v) for v in values), default=0)
    for size, name in ((GIB, "GiB"), (MIB, "MiB")):
        if top >= size:
            return size, name
    return KIB, "KiB"


def _legend(ax: Any) -> None:
    """Beside the plot, never over a curve (the peak is what the reader looks for)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog: the SVG is inlined in HTML


def timeline_chart(tl: dict[str, Any], title: str) -> str:
    """Memory charged since the start, by kind (top) and by cgroup (bottom), with the memory
    queries (dashed) and large allocations (solid) marked."""
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    t = [0.0, *tl["t_s"]]
    for ax, series, what in (
        (axes[0], tl["by_kind"], "by kind"),
        (axes[1], tl["by_cgroup"], "by cgroup"),
    ):
        size, unit = _unit([v for levels in series.values() for v in levels])
        for name, levels in series.items():
            ax.step(t, [0, *[v / size for v in levels]], where="post", label=name)
        for m in tl.get("markers", []):
            if m["t_s"] is None:
                continue
            style = "--" if m["type"] == "query" else "-"
            color = "tab:red" if m["type"] == "query" else "tab:gray"
            ax.axvline(m["t_s"], linestyle=style, color=color, linewidth=0.8, alpha=0.8)
        ax.set_ylabel(f"{unit} charged")
        ax.set_title(f"{title}: {what}", fontsize=10, loc="left")
        if series:
            _legend(ax)
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("seconds since start (red dashed: memory query, gray: large allocation)")
    return _svg(fig)


def cuda_chart(cm: dict[str, Any], title: str) -> str:
    """CUDA memory held over time, by kind (device, vmm, pool, pinned/managed/registered host)."""
    fig, ax = plt.subplots(figsize=(10, 3.2))
    t = [0.0, *cm["timeline"]["t_s"]]
    by_kind = cm["timeline"]["by_kind"]
    size, unit = _unit([v for levels in by_kind.values() for v in levels])
    for kind, levels in by_kind.items():
        ax.step(t, [0, *[v / size for v in levels]], where="post", label=kind)
    ax.set_ylabel(f"{unit} held")
    ax.set_xlabel("seconds since start")
    ax.set_title(f"{title}: CUDA memory by kind", fontsize=10, loc="left")
    if by_kind:
        _legend(ax)
    ax.grid(alpha=0.3)
    return _svg(fig)


def decomposition_chart(d: dict[str, Any]) -> str:
    """Bars: how the signal difference splits into charges, baseline and the unexplained rest."""
    dec = d["decomposition"]
    labels, values = [], []
    if dec["signal_difference_bytes"] is not None:
        labels.append("signal A - B")
        values.append(dec["signal_difference_bytes"])
    if dec.get("baseline_bytes"):
        labels.append("free before start")
        values.append(dec["baseline_bytes"])
    if dec.get("cuda_device_bytes"):
        labels.append("CUDA device")
        values.append(dec["cuda_device_bytes"])
    for k in dec["by_kind"]:
        labels.append(k["label"])
        values.append(k["difference"])
    if dec["unexplained_bytes"] is not None:
        labels.append("unexplained")
        values.append(dec["unexplained_bytes"])
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.45 * max(len(labels), 1)))
    colors = (
        ["tab:blue"] + ["tab:orange"] * (len(labels) - 2) + ["tab:gray"]
        if len(labels) > 1
        else None
    )
    size, unit = _unit(values)
    ax.barh(labels[::-1], [v / size for v in values][::-1], color=colors[::-1] if colors else None)
    ax.set_xlabel(unit)
    ax.set_title("Why B's sizing signal differs", fontsize=10, loc="left")
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig)


def variant_chart(doc: dict[str, Any]) -> str:
    """Per variant, the mean of the KV cache and of the peak charged memory, error bars at the
    95% interval of the mean, the runs as dots."""
    wanted = [m for m in doc["metrics"] if m["column"] in ("kv_bytes", "peak_bytes")]
    fig, axes = plt.subplots(1, max(len(wanted), 1), figsize=(5 * max(len(wanted), 1), 3.6))
    axes = axes if len(wanted) > 1 else [axes]
    names = [v["variant"] for v in doc["variants"]]
    for ax, m in zip(axes, wanted, strict=False):
        stats = [v["metrics"][m["column"]] for v in doc["variants"]]
        means = [(s["mean"] or 0) / GIB for s in stats]
        errs = [
            ((s["ci_high"] - s["ci_low"]) / 2 / GIB) if s["ci_low"] is not None else 0
            for s in stats
        ]
        x = range(len(names))
        ax.bar(x, means, yerr=errs, capsize=6, color="tab:blue", alpha=0.7)
        for i, name in enumerate(names):
            runs = [r[m["column"]] for r in doc["runs"] if r["variant"] == name]
            ys = [v / GIB for v in runs if v is not None]
            ax.plot([i] * len(ys), ys, "o", color="black", markersize=3)
        ax.set_xticks(list(x), names, rotation=20, ha="right")
        ax.set_ylabel("GiB")
        ax.set_title(f"{m['label']} (mean, 95% CI, runs)", fontsize=10, loc="left")
        ax.grid(alpha=0.3, axis="y")
    return _svg(fig)


def variant_decomposition_chart(doc: dict[str, Any]) -> str:
    """Per variant, the diff of its median run against the baseline's: the sizing signal's
    difference and the parts it splits into."""
    comps = [c for c in doc["comparisons"] if (c["median_runs"] or {}).get("decomposition")]
    parts: list[str] = []
    for c in comps:
        parts += [p for p in c["median_runs"]["decomposition"] if p not in parts]
    fig, ax = plt.subplots(figsize=(10, 0.8 + 0.35 * max(len(parts), 1) * max(len(comps), 1)))
    height = 0.8 / max(len(comps), 1)
    for j, c in enumerate(comps):
        dec = c["median_runs"]["decomposition"]
        ys = [i + j * height for i in range(len(parts))]
        ax.barh(ys, [dec.get(p, 0) / GIB for p in parts], height=height, label=c["variant"])
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(parts))], parts)
    ax.invert_yaxis()
    base = doc["baseline"]
    ax.set_xlabel(f"GiB (signal: {base} - variant; charges: variant - {base})")
    ax.set_title("Why each variant differs (diff of the median runs)", fontsize=10, loc="left")
    if comps:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig)
