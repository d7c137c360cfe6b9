"""`uvmtrace demo`: record the KV-cache sizer natively and in Docker, then let `diff` explain.

Set-up (root, probes, a weights file, the image, built offline), two recordings with
`uvmtrace record`, then `uvmtrace diff`. The two runs differ in one controlled way, and the
page-cache state of both copies of the weights is set and measured (mincore) before each run:

  native  reads the host's copy of the weights, already in the page cache (as after a download);
  docker  reads the image's copy, a different file, not in the page cache.

Nothing about the outcome is written here: the KV sizes come from the workload, the explanation
from the recordings. Without a Docker daemon the two runs are native, with the host copy's page
cache warm, then dropped (posix_fadvise DONTNEED).

With --reclaim-before-sizing each run is recorded again with the fix, and the four variants are
repeated in interleaved rounds (native, docker, native-reclaim, docker-reclaim, then the reverse
order, ...): whatever else the host does between runs (other programs' memory, free pages
parked on per-CPU lists, which MemFree leaves out) falls on every variant alike, and each
variant is summarised by its median run. Every run's numbers are kept (summary.json).

Sizing: the workload is TensorRT-LLM's rule, KV = fraction x sysinfo().freeram, so that the
analysis can recognise it. The fraction is chosen once, before both runs, from MemFree, so the
KV cache is about 2 GiB on this machine whatever its free memory; the cap sits far above it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvmtrace.example import image as demo_image
from uvmtrace.example import kvsizer
from uvmtrace.example.kvsizer import GIB, MIB
from uvmtrace.recording.errors import UserError
from uvmtrace.tracer.headroom import per_cpu_free, read_meminfo

KV_TARGET = 2 * GIB  # about what the KV cache gets: bounded, whatever MemFree is
QUICK_KV_TARGET = GIB
VARIANTS = ("native", "docker", "native-cold", "native-reclaim", "docker-reclaim",
            "native-cold-reclaim")  # fmt: skip
OUTPUTS = ("report.html", "diff.json", "summary.json")
RECLAIM_SUFFIX = "-reclaim"
RECLAIM_REPEATS = 3  # rounds with --reclaim-before-sizing unless --repeats says otherwise


@dataclass
class DemoOptions:
    out: Path = Path("demo")
    weights_size: int = GIB
    quick: bool = False
    docker: bool = True  # False: the two-native-runs variant even with a daemon
    load: str = "read"
    container_memory: str | None = None
    reclaim_before_sizing: bool = False  # also each run with `record --reclaim-before-sizing`
    repeats: int | None = None  # rounds of all variants; None: RECLAIM_REPEATS with the fix, 1
    echo: Callable[[str], None] = print


@dataclass
class Run:
    name: str
    recording: Path
    result: kvsizer.Result | None = None
    exit_code: int = 0
    state: dict[str, int | None] = field(default_factory=dict)  # resident page cache per copy
    seconds: float = 0.0
    reclaim: bool = False  # recorded with --reclaim-before-sizing
    reclaimed_bytes: int = 0  # what the recorder freed before the sizing query
    repeat: int = 1  # which round (1-based)
    order: int = 0  # position in the whole sequence of runs (1-based)
    host_before: dict[str, int | None] = field(default_factory=dict)  # MemFree, per-CPU free


@dataclass
class DemoOutcome:
    runs: list[Run]  # every run, in the order they ran
    report: Path | None
    diff: dict[str, Any] | None
    mode: str  # "docker" | "native"
    why_native: str | None = None

    def median(self, variant: str) -> Run | None:
        return median_run([r for r in self.runs if r.name == variant])


def median_run(runs: list[Run]) -> Run | None:
    """The run whose KV size is the median (the lower middle one of an even count)."""
    done = sorted((r for r in runs if r.result is not None), key=lambda r: r.result.kv_bytes)
    return done[(len(done) - 1) // 2] if done else None


def recording_name(variant: str, repeat: int) -> str:
    """native.parquet for the first round, native-2.parquet for the second, ..."""
    return f"{variant}.parquet" if repeat == 1 else f"{variant}-{repeat}.parquet"


# ---- page cache of one file ---------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]  # fmt: skip
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
PROT_READ, MAP_SHARED = 1, 1
PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(path: Path) -> int | None:
    """Bytes of `path` in the page cache now (mincore over a mapping of the file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        addr = _libc.mmap(None, size, PROT_READ, MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = (ctypes.c_ubyte * pages)()
            if _libc.mincore(addr, size, vec) != 0:
                return None
            return min(size, sum(b & 1 for b in bytes(vec)) * PAGE)
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def drop_cached(path: Path) -> None:
    """Evict `path` from the page cache (written back first: only clean pages can go)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm_cached(path: Path) -> None:
    """Read `path` once so that all of it is in the page cache (as after a download)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while os.read(fd, 8 * MIB):
            pass
    finally:
        os.close(fd)


# ---- set-up ---------------------------------------------------------------------------------


def choose_fraction(mem_free: int, target: int) -> float:
    """The largest multiple of 0.05 (as frameworks use) that keeps fraction x MemFree <= target."""
    steps = max(1, min(18, int(target / max(mem_free, 1) * 20)))
    return round(steps * 0.05, 2)


def _probes_note() -> str:
    try:
        from uvmtrace.host.bcc import import_bcc

        import_bcc()
    except Exception as exc:  # BCC missing, headers missing: record notes what is not traced
        return f"kernel probes unavailable ({str(exc).splitlines()[0][:120]}); recording anyway"
    return "kernel probes: BCC available"


def _prepare_out(out: Path) -> None:
    if out.is_symlink():
        raise UserError(f"refusing to use {out}: it is a symlink")
    out.mkdir(mode=0o755, parents=True, exist_ok=True)
    ours = [out / name for name in OUTPUTS]
    ours += [p for v in VARIANTS for p in (out / f"{v}.parquet", *out.glob(f"{v}-[0-9]*.parquet"))]
    for p in ours:  # only our own outputs, only regular files
        if p.is_file() and not p.is_symlink():
            p.unlink()


def _ensure_weights(path: Path, size: int) -> None:
    if path.is_symlink():
        raise UserError(f"refusing to use {path}: it is a symlink")
    if path.exists() and path.stat().st_size != size:
        path.unlink()
    try:
        kvsizer.ensure_weights(str(path), size)
    except kvsizer.KvSizerError as exc:
        raise UserError(str(exc)) from None


def _record(
    run: Run, command: list[str], echo: Callable[[str], None], interval: float
) -> subprocess.CompletedProcess[str]:
    fix = ["--reclaim-before-sizing"] if run.reclaim else []
    argv = [sys.executable, "-m", "uvmtrace.cli", "record", "-q", "--as-root", "--force", *fix,
            "--interval", str(interval), "-o", str(run.recording), "--", *command]  # fmt: skip
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    run.seconds = time.monotonic() - t
    run.exit_code = r.returncode
    run.result = kvsizer.parse_result(r.stdout)
    for line in r.stdout.splitlines():
        if line.startswith("[TensorRT-LLM]"):
            echo(f"    {line}")
    if r.returncode != 0 or run.result is None:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-3:]
        raise UserError(f"{run.name} run failed (exit {r.returncode}): " + " | ".join(tail))
    run.reclaimed_bytes = _reclaimed(run.recording)
    return r


def _reclaimed(recording: Path) -> int:
    """What the recorder freed before the sizing queries, from the recording's metadata."""
    import pyarrow.parquet as pq

    from uvmtrace.recording.schema import METADATA_KEY

    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        meta = json.loads(pq.read_metadata(recording).metadata[METADATA_KEY])
        return int((meta.get("reclaim_before_sizing") or {}).get("reclaimed_bytes") or 0)
    return 0


def _state_line(state: dict[str, int | None]) -> str:
    def fmt(v: int | None) -> str:
        return "unknown" if v is None else f"{v / MIB:,.0f} MiB"

    return ", ".join(f"{k} {fmt(v)} in page cache" for k, v in state.items())


# ---- the demo -------------------------------------------------------------------------------


def run_demo(opts: DemoOptions) -> DemoOutcome:
    echo = opts.echo
    if os.geteuid() != 0:
        raise UserError("uvmtrace demo needs root (eBPF, cgroups, Docker); run it with sudo")
    out = opts.out
    _prepare_out(out)
    echo(f"uvmtrace demo: {_probes_note()}")
    weights = (out / "weights.bin").absolute()
    t = time.monotonic()
    _ensure_weights(weights, opts.weights_size)
    echo(f"  weights: {weights} ({opts.weights_size / MIB:,.0f} MiB)")

    why_native = None if opts.docker else "--no-docker"
    if why_native is None:
        why_native = demo_image.docker_available()
    image: demo_image.DemoImage | None = None
    if why_native is None:
        image = demo_image.build_image(weights)
        echo(f"  image: {image.tag}, weights baked in at {demo_image.WEIGHTS_IN_IMAGE}")
        if image.weights_host_path is None:
            echo("  (not overlay2: the image's copy cannot be evicted before the run)")
    else:
        echo(f"  Docker: {why_native}; recording two native runs instead (warm vs cold cache)")
    echo(f"  set-up took {time.monotonic() - t:.1f} s")

    mem = read_meminfo()
    target = QUICK_KV_TARGET if opts.quick else KV_TARGET
    fraction = choose_fraction(mem["MemFree"], target)
    # The cap only guards the host: far above what the signal can give, so the signal decides.
    max_kv = max(kvsizer.DEFAULT_MAX_KV, 3 * target)
    activation = 64 * MIB if opts.quick else kvsizer.DEFAULT_ACTIVATION
    sizing = ["--signal", "sysinfo", "--device", "cpu", "--load", opts.load,
              "--fraction", str(fraction), "--max-kv", str(max_kv),
              "--activation", str(activation)]  # fmt: skip
    echo(
        f"  sizing: KV = {fraction} x sysinfo().freeram (MemFree now {mem['MemFree'] / GIB:.1f} "
        f"GiB), cap {max_kv / GIB:.0f} GiB"
    )
    interval = 0.2 if opts.quick else 0.1

    host_copy = weights
    native_cmd = [sys.executable, "-m", "uvmtrace.example.kvsizer", "--weights", str(weights),
                  *sizing]  # fmt: skip
    runs: list[tuple[Run, list[str], Callable[[], dict[str, int | None]]]] = []

    def host_warm() -> dict[str, int | None]:
        warm_cached(host_copy)
        state = {"host copy": resident_bytes(host_copy)}
        if image is not None and image.weights_host_path is not None:
            drop_cached(image.weights_host_path)
            state["image copy"] = resident_bytes(image.weights_host_path)
        return state

    def host_cold() -> dict[str, int | None]:
        drop_cached(host_copy)
        return {"host copy": resident_bytes(host_copy)}

    variants: list[tuple[str, list[str], Callable[[], dict[str, int | None]]]] = [
        ("native", native_cmd, host_warm)
    ]
    if image is not None:
        docker_cmd = demo_image.docker_run_argv(
            image,
            ["--weights", demo_image.WEIGHTS_IN_IMAGE, *sizing],
            name=f"uvmtrace-demo-{os.getpid()}",
            memory=opts.container_memory,
        )
        variants.append(("docker", docker_cmd, host_warm))
    else:
        variants.append(("native-cold", native_cmd, host_cold))
    if opts.reclaim_before_sizing:  # the same runs again, with the fix
        variants += [(f"{name}{RECLAIM_SUFFIX}", c, p) for name, c, p in variants]
    repeats = opts.repeats or (RECLAIM_REPEATS if opts.reclaim_before_sizing else 1)
    runs: list[Run] = []
    for k in range(1, repeats + 1):
        # interleaved, every other round reversed: a drift of the host over time falls on
        # every variant alike instead of on the later ones
        for name, command, prepare in variants if k % 2 else variants[::-1]:
            run = Run(name, out / recording_name(name, k), reclaim=name.endswith(RECLAIM_SUFFIX),
                      repeat=k, order=len(runs) + 1)  # fmt: skip
            runs.append(run)
            label = name if repeats == 1 else f"{name} #{k}"
            run.state = prepare()
            run.host_before = host_free()
            echo(f"  {label}: before the run, {_state_line(run.state)}; {_host_line(run)}")
            _record(run, command, echo, interval)
            res = run.result
            assert res is not None
            free, kv = res.free_bytes / GIB, res.kv_bytes / GIB
            echo(
                f"  {label}: sysinfo free {free:.2f} GiB -> KV {kv:.3f} GiB ({res.kv_decided_by}"
                f" decided); recorded in {run.seconds:.1f} s -> {run.recording}"
            )
            if run.reclaim:
                echo(f"  {label}: reclaimed {run.reclaimed_bytes / MIB:,.0f} MiB of clean page "
                     "cache before the sizing query")  # fmt: skip
            if res.kv_decided_by != "signal":
                echo(f"  warning: in the {label} run the cap decided the KV size: not informative")
    write_summary(out / "summary.json", runs)
    if opts.reclaim_before_sizing:
        for line in side_by_side(runs):
            echo(line)

    report = out / "report.html"
    diff_json = out / "diff.json"
    a, b = (median_run([r for r in runs if r.name == name]) for name, _, _ in variants[:2])
    assert a is not None and b is not None
    if repeats > 1:
        echo(f"\n(diff of the median runs: {a.recording.name}, {b.recording.name})")
    doc = run_diff(a.recording, b.recording, report, diff_json, echo)
    return DemoOutcome(
        runs=runs,
        report=report if report.exists() else None,
        diff=doc,
        mode="docker" if image is not None else "native",
        why_native=why_native,
    )


def host_free() -> dict[str, int | None]:
    """The host's free memory now: MemFree, and the free pages on per-CPU lists it leaves out."""
    return {"MemFree": read_meminfo().get("MemFree"), "per-CPU free": per_cpu_free()}


def _host_line(run: Run) -> str:
    free, pcp = run.host_before.get("MemFree"), run.host_before.get("per-CPU free")
    line = f"host MemFree {free / GIB:.2f} GiB" if free is not None else "host MemFree unknown"
    return line + (f" (+{pcp / MIB:,.0f} MiB free on per-CPU lists)" if pcp is not None else "")


def _entry(run: Run) -> dict[str, Any]:
    res = run.result
    assert res is not None
    return {
        "kv_bytes": res.kv_bytes,
        "signal": res.signal,
        "signal_bytes": res.free_bytes,
        "reclaimed_bytes": run.reclaimed_bytes,
        "reclaim_before_sizing": run.reclaim,
        "kv_decided_by": res.kv_decided_by,
        "exit_code": run.exit_code,
        "recording": run.recording.name,
        "repeat": run.repeat,
        "order": run.order,
        "host_mem_free_before": run.host_before.get("MemFree"),
        "host_per_cpu_free_before": run.host_before.get("per-CPU free"),
    }


def _relative(a: Run | None, b: Run | None) -> float | None:
    """(B's KV - A's KV) / A's KV, None without both."""
    if a is None or b is None or a.result is None or b.result is None or not a.result.kv_bytes:
        return None
    return round((b.result.kv_bytes - a.result.kv_bytes) / a.result.kv_bytes, 6)


def write_summary(path: Path, runs: list[Run]) -> dict[str, Any]:
    """OUT/summary.json, for scripts: per variant its median run (KV size, signal, what it
    answered, what was reclaimed) and every repeat; then the relative KV differences of the
    medians that the fix is judged by."""
    doc: dict[str, Any] = {"runs": {}, "comparison": {}}
    names = list(dict.fromkeys(r.name for r in runs))
    for name in names:
        mine = [r for r in runs if r.name == name and r.result is not None]
        med = median_run(mine)
        if med is None:
            continue
        doc["runs"][name] = {**_entry(med), "repeats": [_entry(r) for r in mine]}
    medians = {name: median_run([r for r in runs if r.name == name]) for name in names}
    other = "docker" if "docker" in medians else "native-cold"
    pairs = {
        f"{other}_vs_native": ("native", other),
        f"{other}{RECLAIM_SUFFIX}_vs_native{RECLAIM_SUFFIX}": (
            f"native{RECLAIM_SUFFIX}", f"{other}{RECLAIM_SUFFIX}"),
        f"native{RECLAIM_SUFFIX}_vs_native": ("native", f"native{RECLAIM_SUFFIX}"),
        f"{other}{RECLAIM_SUFFIX}_vs_{other}": (other, f"{other}{RECLAIM_SUFFIX}"),
    }  # fmt: skip
    for key, (a, b) in pairs.items():
        rel = _relative(medians.get(a), medians.get(b))
        if rel is not None:
            doc["comparison"][key] = rel
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def side_by_side(runs: list[Run]) -> list[str]:
    """KV sizes without and with --reclaim-before-sizing: the medians, then every run."""
    names = list(dict.fromkeys(r.name for r in runs))
    repeats = max(r.repeat for r in runs)
    what = f"median of {repeats} runs" if repeats > 1 else "one run each"
    lines = ["", f"KV cache without and with --reclaim-before-sizing ({what}):"]
    lines.append(f"  {'run':<12} {'without':>12} {'with':>12} {'reclaimed':>12}   every run (GiB)")
    base: Run | None = None
    for name in names:
        fixed_name = f"{name}{RECLAIM_SUFFIX}"
        if name.endswith(RECLAIM_SUFFIX) or fixed_name not in names:
            continue
        plain = median_run([r for r in runs if r.name == name])
        fixed = median_run([r for r in runs if r.name == fixed_name])
        if plain is None or fixed is None or plain.result is None or fixed.result is None:
            continue
        every = " | ".join(
            ", ".join(f"{r.result.kv_bytes / GIB:.3f}" for r in runs
                      if r.name == n and r.result is not None)
            for n in (name, fixed_name)
        )  # fmt: skip
        without, with_fix = plain.result.kv_bytes / GIB, fixed.result.kv_bytes / GIB
        lines.append(
            f"  {name:<12} {without:>8.3f} GiB {with_fix:>8.3f} GiB"
            f" {fixed.reclaimed_bytes / MIB:>8,.0f} MiB   {every}"
        )
        if base is None:
            base = fixed
        else:
            rel = _relative(base, fixed)
            if rel is not None:
                lines.append(f"  with the fix, {name} vs {base.name.removesuffix(RECLAIM_SUFFIX)}: "
                             f"{rel:+.1%} (medians)")  # fmt: skip
    return lines


def run_diff(
    a: Path, b: Path, html: Path, json_path: Path, echo: Callable[[str], None]
) -> dict[str, Any] | None:
    """`uvmtrace diff A B --html --json-out`; its terminal output is the demo's conclusion."""
    argv = [sys.executable, "-m", "uvmtrace.cli", "diff", str(a), str(b),
            "--html", str(html), "--json-out", str(json_path)]  # fmt: skip
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        echo(f"  uvmtrace diff could not run: {why}")
        return None
    doc = None
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads(json_path.read_text())
    conclusion = (doc or {}).get("conclusion") or []
    echo("")
    echo(f"uvmtrace diff {a.name} {b.name}:")
    for line in conclusion or r.stdout.rstrip().splitlines():
        echo(f"  {line}")
    return doc
