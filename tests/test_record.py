"""`uvmtrace record -- CMD`: one complete recording per run, whatever happens to the command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from uvmtrace.recording.reader import open_recording

MiB = 1 << 20
BUCKET_NS = 100_000_000  # the probes' default aggregation bucket
UVMTRACE = [sys.executable, "-m", "uvmtrace.cli"]

# Reads /proc/meminfo before and after the work: the probes record those opens, which bracket
# the charges that the work caused (the interpreter's own start-up charges fall outside).
WORKLOAD = textwrap.dedent(
    """
    import mmap, os, sys, time
    def mark():
        with open("/proc/meminfo") as f:
            f.read()
    time.sleep(0.25)  # start-up charges land in earlier 100 ms buckets than the first mark
    mark()
    anon = mmap.mmap(-1, 200 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for off in range(0, 200 << 20, 4096):
        anon[off] = 1
    with open(sys.argv[1], "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass
    mark()
    time.sleep(0.5)  # let the samplers see the peak
    """
)


def uvmtrace(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*UVMTRACE, *args], capture_output=True, text=True, **kw)


def cold_file(path: Path, size: int) -> Path:
    """A file of `size` bytes that is not in the page cache."""
    with open(path, "wb") as f:
        f.write(os.urandom(MiB) * (size // MiB))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


def events(path: Path) -> pl.DataFrame:
    return open_recording(path).scan().collect()


def charged_between_marks(df: pl.DataFrame, cgroup_id: int, item: str, pid: int) -> int:
    """Charges from the time bucket of the first mark to the bucket of the last one."""
    marks = df.filter(
        (pl.col("event") == "openat") & (pl.col("path") == "/proc/meminfo") & (pl.col("pid") == pid)
    ).get_column("ts_ns")
    assert marks.len() == 2, "the workload's two /proc/meminfo reads were not traced"
    bucket = BUCKET_NS
    lo, hi = marks.min() // bucket * bucket, marks.max() // bucket * bucket
    return int(
        df.filter(
            (pl.col("event") == "memcg_charge")
            & (pl.col("cgroup_id") == cgroup_id)
            & (pl.col("item") == item)
            & pl.col("ts_ns").is_between(lo, hi)
        )
        .get_column("bytes")
        .sum()
    )


@pytest.mark.usefixtures("need_bpf")
def test_a_python_workload_is_charged_its_anon_and_file_bytes(tmp_path: Path) -> None:
    data = cold_file(tmp_path / "data.bin", 100 * MiB)
    out = tmp_path / "x.parquet"
    r = uvmtrace("record", "-q", "-o", str(out), "--", sys.executable, "-c", WORKLOAD, str(data))
    assert r.returncode == 0, r.stderr
    rec = open_recording(out)
    df = rec.scan().collect()
    assert {"kernel", "sample", "proc"} <= set(df.get_column("stream").unique().to_list())
    (target,) = rec.metadata["target_cgroups"]
    assert rec.metadata["bucket_ns"] == BUCKET_NS
    # every key the recorder wrote has its typed field (recording/metadata.py)
    assert rec.meta.extra == {} and rec.meta.ended and rec.meta.uvmtrace_version
    # No probe dropped anything (`<probe>_nested`: host-wide IRQ-time misses, not all ours).
    assert {k: v for k, v in rec.metadata["lost"].items() if v and not k.endswith("_nested")} == {}
    pid = df.filter(pl.col("event") == "exec").get_column("pid")[0]
    anon = charged_between_marks(df, target, "NR_ANON_MAPPED", pid)
    file = charged_between_marks(df, target, "NR_FILE_PAGES", pid)
    assert anon == pytest.approx(200 * MiB, rel=0.05)
    assert file == pytest.approx(100 * MiB, rel=0.05)
    # The samples of the command's cgroup show the rise too (v1: rss/cache; v2: anon/file).
    stat = df.filter((pl.col("event") == "memory.stat") & (pl.col("cgroup_id") == target))
    rise = stat.group_by("item").agg((pl.col("bytes").max() - pl.col("bytes").first()).alias("d"))
    rises = dict(rise.iter_rows())
    assert rises.get("rss", rises.get("anon", 0)) >= 190 * MiB
    assert rises.get("cache", rises.get("file", 0)) >= 95 * MiB


def test_the_exit_code_is_the_commands(tmp_path: Path) -> None:
    r = uvmtrace("record", "-q", "-o", str(tmp_path / "a.parquet"), "--", "sh", "-c", "exit 7")
    assert r.returncode == 7
    assert open_recording(tmp_path / "a.parquet").metadata["exit_code"] == 7


def test_a_command_killed_by_a_signal_leaves_a_complete_file(tmp_path: Path) -> None:
    out = tmp_path / "k.parquet"
    r = uvmtrace("record", "-q", "-o", str(out), "--", "sh", "-c", "kill -KILL $$")
    assert r.returncode == 128 + signal.SIGKILL
    rec = open_recording(out)
    assert rec.metadata["exit_code"] == 137
    df = rec.scan().collect()
    assert df.filter(pl.col("event") == "wait_status").get_column("result").to_list() == [137]
    assert df.filter(pl.col("event") == "meminfo").height > 0


def start_recording(out: Path, *command: str) -> subprocess.Popen:
    """A recording whose command prints "started" first: returns once the command runs."""
    proc = subprocess.Popen([*UVMTRACE, "record", "-q", "-o", str(out), "--", *command],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    return proc


def test_ctrl_c_goes_to_the_command_and_the_file_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "c.parquet"
    script = (
        "import time\nprint('started', flush=True)\ntry:\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    raise SystemExit(42)"
    )
    proc = start_recording(out, sys.executable, "-c", script)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 42  # the command's own answer to Ctrl-C
    rec = open_recording(out)
    assert rec.metadata["exit_code"] == 42
    assert rec.metadata["signals_forwarded"] == ["SIGINT"]
    assert rec.meta.extra == {} and rec.meta.signals_forwarded == ("SIGINT",)


def test_sigterm_to_uvmtrace_reaches_the_command(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    proc = start_recording(out, "sh", "-c", "echo started; exec sleep 60")
    proc.terminate()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert open_recording(out).metadata["exit_code"] == 128 + signal.SIGTERM


def test_a_signal_during_set_up_stops_before_the_command_runs(tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    marker = tmp_path / "ran"
    proc = subprocess.Popen([*UVMTRACE, "record", "-q", "-o", str(out), "--",
                             "touch", str(marker)])  # fmt: skip
    time.sleep(0.8)  # imports done, probes still compiling (or, without BPF, launching)
    proc.terminate()
    code = proc.wait(timeout=60)
    rec = open_recording(out)  # complete either way
    if code == 128 + signal.SIGTERM and not marker.exists():
        assert {"what": "the command", "why": "interrupted during set-up"} in rec.metadata[
            "not_traced"
        ]
    else:  # the machine was fast: the command had already run to its end
        assert code == 0 and marker.exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--", "no-such-command-xyz"], 127, "command not found"),
        ([], 2, "no command given"),
        (["-o", "/nonexistent/dir/x.parquet", "--", "true"], 2, "does not exist"),
    ],
)
def test_bad_invocations_get_one_line(tmp_path: Path, args, code: int, message: str) -> None:
    if "-o" not in args:
        args = ["-o", str(tmp_path / "x.parquet"), *args]
    r = uvmtrace("record", "-q", *args, cwd=tmp_path)
    assert r.returncode == code
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.spool"))


def test_not_root_gets_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        r = uvmtrace("record", "-o", str(tmp_path / "x.parquet"), "--", "true")
    else:  # drop to nobody after the imports (the package lives under root-only paths)
        code = (
            "import os, sys, difflib, click._textwrap\nfrom uvmtrace.cli.main import main\n"
            "import uvmtrace.cli.commands.record, uvmtrace.tracer.session\n"
            "import uvmtrace.tracer.attach\n"
            "os.setgroups([]); os.setresgid(*[65534] * 3); os.setresuid(*[65534] * 3)\n"
            f"main(['record', '-o', '{tmp_path}/x.parquet', '--', 'true'])"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2
    assert "needs root" in r.stderr and "sudo" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_under_sudo_the_command_runs_as_the_invoking_user(tmp_path: Path, need_root) -> None:
    out = tmp_path / "u.parquet"
    env = {**os.environ, "SUDO_UID": "65534", "SUDO_GID": "65534", "SUDO_USER": "nobody"}
    os.chmod(tmp_path, 0o777)
    r = subprocess.run(
        [*UVMTRACE, "record", "-q", "-o", str(out), "--", "sh", "-c", "id -u > id.txt"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "id.txt").read_text().strip() == "65534"
    assert out.stat().st_uid == 65534  # the recording belongs to the user, not to root
    assert open_recording(out).metadata["run_as"] == "nobody"


def test_framework_log_lines_pass_through_and_become_log_events(tmp_path: Path) -> None:
    out = tmp_path / "l.parquet"
    line = (
        "[TensorRT-LLM][INFO] [MemUsageChange] Allocated 1.34 GiB for max tokens in paged KV "
        "cache (11008)."
    )
    r = uvmtrace("record", "-q", "-o", str(out), "--", "sh", "-c", f"echo '{line}'; echo other >&2")
    assert r.returncode == 0
    assert r.stdout == line + "\n"  # still shown, unchanged
    assert r.stderr.strip() == "other"
    kv = events(out).filter(pl.col("event") == "kv_cache").row(0, named=True)
    assert kv["stream"] == "log" and kv["item"] == "tensorrt_llm"
    assert kv["bytes"] == pytest.approx(1.34 * (1 << 30), rel=0.005)
    assert kv["text"] == line


def test_a_kv_line_in_an_unknown_format_is_counted_in_the_report(tmp_path: Path) -> None:
    """vLLM Ascend's start-up advice (vllm-project/vllm-ascend#8289) is no format uvmtrace
    knows: the report says so instead of dropping it."""
    out = tmp_path / "u.parquet"
    known = "[TensorRT-LLM][INFO] Allocate 69524783104 bytes for k/v cache. "
    unknown = (
        "(EngineCore pid=2884597) INFO 04-15 06:30:01 [worker.py:575] Free memory on device "
        "(60.86/61.27 GiB) on startup. Replace gpu_memory_utilization with "
        "`--kv-cache-memory=57403864576` (53.46 GiB) to fit in"
    )
    script = tmp_path / "say.sh"
    script.write_text(f"printf '%s\\n' '{known}' '{unknown}'\n")
    r = uvmtrace("record", "-q", "-o", str(out), "--", "sh", str(script))
    assert r.returncode == 0 and r.stdout == f"{known}\n{unknown}\n"
    logs = events(out).filter(pl.col("stream") == "log")
    assert logs.get_column("event").to_list() == ["kv_cache", "log_unparsed"]
    assert logs.row(1, named=True)["item"] == "vllm"  # from vLLM's prefix
    report = uvmtrace("report", str(out))
    assert report.returncode == 0, report.stderr
    text = " ".join(report.stdout.split())
    assert "1 framework line mentioned KV cache but was not understood" in text


def test_a_reader_that_goes_away_does_not_stop_the_recording(tmp_path: Path) -> None:
    """`uvmtrace record ... | head -1`: the command sees the closed pipe exactly as it would
    without uvmtrace (here: sh dies of SIGPIPE), and the recording is complete."""
    out = tmp_path / "p.parquet"
    script = "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done; exit 3"

    def read_one_line_then_close(argv: list[str]) -> int:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.stdout.close()
        code = proc.wait(timeout=120)
        return 128 - code if code < 0 else code  # as a shell reports a signal

    alone = read_one_line_then_close(["sh", "-c", script])
    traced = read_one_line_then_close([*UVMTRACE, "record", "-q", "-o", str(out), "--",
                                       "sh", "-c", script])  # fmt: skip
    assert traced == alone == 128 + signal.SIGPIPE
    assert open_recording(out).metadata["exit_code"] == alone


def test_every_fault_of_the_command_is_traced_from_its_fork(tmp_path: Path, need_bpf) -> None:
    out = tmp_path / "f.parquet"
    script = (
        "import mmap\nm = mmap.mmap(-1, 64 << 20)\nfor o in range(0, 64 << 20, 4096):\n    m[o] = 1"
    )
    r = uvmtrace("record", "-q", "-o", str(out), "--", sys.executable, "-c", script)
    assert r.returncode == 0, r.stderr
    df = events(out)
    pid = df.filter(pl.col("event") == "wait_status").get_column("pid")[0]
    traced = df.filter((pl.col("event") == "page_fault") & (pl.col("pid") == pid))
    kernel = df.filter((pl.col("event") == "proc_faults") & (pl.col("pid") == pid))
    assert set(kernel.get_column("text").to_list()) == {"at exit"}
    # The kernel's own minflt + majflt, read while the command was a zombie: the probes saw the
    # faults the forked child took before exec (before uvmtrace knew its pid) too.
    assert traced.get_column("count").sum() == pytest.approx(
        kernel.get_column("count").sum(), abs=2
    )


def test_records_on_a_host_without_polars_or_matplotlib(tmp_path: Path, need_bpf) -> None:
    """A GPU host that only records has no analysis packages (the device machine has none)."""
    out = tmp_path / "no-analysis.parquet"
    block = "import sys\nsys.modules['polars'] = sys.modules['matplotlib'] = None\n"
    code = block + "from uvmtrace.cli.main import main\nmain(sys.argv[1:])\n"
    r = subprocess.run(
        [sys.executable, "-c", code, "record", "-q", "-o", str(out), "--", "true"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    streams = set(events(out)["stream"].unique().to_list())
    assert {"kernel", "proc", "sample"} <= streams
    d = subprocess.run(
        [sys.executable, "-c", code, "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert d.returncode == 0, d.stderr
    assert '"can_record": true' in d.stdout


@pytest.mark.usefixtures("need_bpf")
def test_through_a_pyenv_style_wrapper_files_and_libraries_have_their_paths(
    tmp_path: Path,
) -> None:
    # Like pyenv's shim: a bash script that works out a version through pipes and subshells,
    # then execs the real interpreter under the same pid.
    shims = tmp_path / "shims"
    shims.mkdir()
    (tmp_path / "version").write_text(" 3.x \n")
    wrapper = shims / "python3"
    wrapper.write_text(
        "#!/usr/bin/env bash\nset -e\n"
        f'version="$(cat "{tmp_path}/version" | tr -d "[:space:]")"\n'
        f'[ -n "$version" ] && exec "{os.path.realpath(sys.executable)}" "$@"\n'
    )
    wrapper.chmod(0o755)
    data = cold_file(tmp_path / "data.bin", 100 * MiB)
    out = tmp_path / "w.parquet"
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
    r = uvmtrace("record", "-q", "-o", str(out), "--", "python3", "-c", WORKLOAD, str(data),
                 env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    df = events(out)
    cached = df.filter(pl.col("event") == "filemap_add").group_by("path").agg(pl.col("bytes").sum())
    by_path = dict(cached.iter_rows())
    assert by_path.get(str(data), 0) >= 95 * MiB, by_path
    mapped = df.filter(pl.col("event") == "mmap").get_column("path").drop_nulls().to_list()
    assert mapped and all(p.startswith("/") for p in mapped), sorted(set(mapped))[:10]
