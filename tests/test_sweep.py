"""`uvmtrace sweep`: a plan read and checked, variants turned into `record` runs, and a real
sweep (eBPF, Docker) of the demo's sizer natively and in Docker, interrupted with Ctrl-C after
two runs, resumed, and summarized. A podman variant stands for a runtime this host lacks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from conftest import _need, docker_ok, has_bpf

from uvmtrace.analysis.render_json import load_schema
from uvmtrace.cli.main import main
from uvmtrace.example import kvsizer
from uvmtrace.recording.errors import UserError
from uvmtrace.sweep.plan import load_plan, run_argv
from uvmtrace.sweep.run import Sweep

PLAN = """
repeats = 2
command = ["python3", "serve.py"]

[[variants]]
name = "native"
env = { MODE = "a" }

[[variants]]
name = "docker-limited"
runtime = "docker"
image = "img:1"
flags = ["--ipc=host"]
memory = "2G"
env = { MODE = "b" }

[[variants]]
name = "jail"
runtime = "chroot"
root = "{out}/rootfs"
command = ["/bin/serve"]
memory = "1G"
"""


def _plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_each_variant_becomes_the_argv_record_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SUDO_UID", "1000")
    monkeypatch.setenv("SUDO_GID", "1000")
    plan = load_plan(_plan(tmp_path, PLAN), tmp_path / "out")
    native, docker, jail = plan.variants
    assert run_argv(native, 1) == ([], ["python3", "serve.py"], {"MODE": "a"})
    opts, argv, env = run_argv(docker, 2)
    assert opts == ["--as-root"] and env == {}
    assert argv[:3] == ["docker", "run", "--rm"]
    assert argv[argv.index("--memory") + 1] == "2G"
    assert argv[argv.index("-e") + 1] == "MODE=b"
    assert argv[-4:] == ["--ipc=host", "img:1", "python3", "serve.py"]
    opts, argv, _ = run_argv(jail, 1)
    assert opts == ["--as-root", "--memory-limit", "1G"]
    root = str((tmp_path / "out").absolute() / "rootfs")
    assert argv == ["chroot", "--userspec=1000:1000", root, "/bin/serve"]


def test_runs_are_interleaved_repeat_by_repeat(tmp_path) -> None:
    plan = load_plan(_plan(tmp_path, PLAN), tmp_path / "out")
    order = Sweep(plan, tmp_path / "out", print).order(plan.variants)
    assert [(v.name, i) for v, i in order] == [
        ("native", 1), ("docker-limited", 1), ("jail", 1),
        ("native", 2), ("docker-limited", 2), ("jail", 2),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("repeats = [", "not valid TOML"),
        ("command = ['x']\n", "at least one [[variants]]"),
        ("command = ['x']\n[[variants]]\nname = 'd'\nruntime = 'docker'\n", "needs image"),
        ("command = ['x']\n[[variants]]\nname = 'a'\n[[variants]]\nname = 'a'\n", "must differ"),
        ("command = ['x']\nrepeat = 3\n[[variants]]\nname = 'a'\n", "unknown key(s) repeat"),
        ("command = ['x']\n[[variants]]\nname = '../a'\n", "needs a name"),
        ("[[variants]]\nname = 'a'\n", "no command"),
        ("command = ['x']\n[[variants]]\nname = 'a'\nruntime = 'lxc'\n", "runtime must be"),
    ],
)
def test_a_bad_plan_is_one_line(tmp_path, capsys, text, says) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(_plan(tmp_path, text)), "-o", str(tmp_path / "out")])
    assert exit_.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("uvmtrace: error:") and says in err[0]


def test_resume_refuses_another_plan(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"plan": {"repeats": 9}, "plan_file": "old"}))
    plan = load_plan(_plan(tmp_path, PLAN), out)
    with pytest.raises(UserError, match="the plan differs"):
        Sweep(plan, out, print).run(tmp_path / "plan.toml", resume=True)
    with pytest.raises(UserError, match="already holds a sweep"):
        Sweep(plan, out, print).run(tmp_path / "plan.toml", resume=False)


# ---- the real thing: eBPF, Docker, Ctrl-C, --resume --------------------------------------------

SIZER = ["--signal", "sysinfo", "--device", "cpu", "--fraction", "0.05", "--activation", "32M"]
REAL_PLAN = f"""
repeats = 3
between = "drop-caches"
record = ["--interval", "0.2"]
setup = ["{{python}}", "-m", "uvmtrace.cli", "demo-image", "--out", "{{out}}/setup",
         "--tag", "uvmtrace-sweep-test:latest", "--weights-size", "64M", "--no-rootfs"]
command = ["/usr/local/bin/python3", "-I", "/opt/uvmtrace/kvsizer.py",
           "--weights", "/models/weights.bin", {", ".join(map(repr, SIZER))}]

[[variants]]
name = "native"
command = ["{{python}}", "-I", "-m", "uvmtrace.example.kvsizer",
           "--weights", "{{out}}/setup/weights.bin", {", ".join(map(repr, SIZER))}]
warm = ["{{out}}/setup/weights.bin"]

[[variants]]
name = "docker"
runtime = "docker"
image = "uvmtrace-sweep-test:latest"
flags = ["--network", "none"]

[[variants]]
name = "podman"
runtime = "podman"
image = "uvmtrace-sweep-test:latest"
"""


def _sweep(plan: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    # its own session, like a terminal's foreground job: Ctrl-C reaches the whole group
    return subprocess.Popen(
        [sys.executable, "-m", "uvmtrace.cli", "sweep", str(plan), "-o", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")[-2000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    _need(os.geteuid() == 0, "needs root", ci_must_have=True)
    _need(has_bpf(), "needs root, BCC and tracefs (run scripts/setup-host)", ci_must_have=True)
    _need(docker_ok(), "needs a running Docker daemon", ci_must_have=True)
    base = tmp_path_factory.mktemp("sweep")
    plan, out = base / "plan.toml", base / "out"
    plan.write_text(REAL_PLAN)
    first = _sweep(plan, out)
    # the third run (native, repeat 2) has started: two runs are complete
    _wait_for(out / "variant=native" / "run=2" / "output.log", first)
    time.sleep(1.0)
    os.killpg(first.pid, signal.SIGINT)
    interrupted = first.communicate(timeout=180)[0].decode(errors="replace")
    assert first.returncode == 130, interrupted[-2000:]
    second = _sweep(plan, out, "--resume")
    resumed = second.communicate(timeout=600)[0].decode(errors="replace")
    assert second.returncode == 0, resumed[-3000:]
    return out, interrupted, resumed


def test_ctrl_c_keeps_finished_runs_and_resume_runs_the_rest(swept) -> None:
    out, interrupted, resumed = swept
    assert "interrupted: 2 of 6 runs kept" in interrupted
    assert "resuming: 2 of 6 runs already recorded" in resumed
    assert "[run 3/6] native, repeat 2/3" in resumed and "[run 1/6]" not in resumed
    for variant in ("native", "docker"):
        for run in (1, 2, 3):
            done = json.loads((out / f"variant={variant}" / f"run={run}" / "run.json").read_text())
            assert done["record_exit_code"] == 0 and done["recorded"]


def test_a_missing_runtime_is_skipped_with_the_reason(swept) -> None:
    out, interrupted, _ = swept
    if shutil.which("podman") is not None:
        pytest.skip("podman is installed here: nothing is missing")
    assert "variant podman: skipped (no podman command on this host)" in interrupted
    state = json.loads((out / "sweep.json").read_text())
    assert {v["name"]: v["skipped"] for v in state["variants"]}["podman"].startswith("no podman")
    assert not (out / "variant=podman").exists()


def test_the_summary_agrees_with_what_the_sizer_says(swept) -> None:
    out, _, _ = swept
    doc = json.loads((out / "summary.json").read_text())
    assert (out / "summary.parquet").is_file() and (out / "summary.html").is_file()
    jsonschema.Draft202012Validator(load_schema("summary_schema.json")).validate(doc)
    assert [v["variant"] for v in doc["variants"]] == ["native", "docker"]
    for row in doc["runs"]:
        log = (Path(row["path"]).parent / "output.log").read_text()
        said = kvsizer.parse_result(log)
        assert said is not None and row["exit_code"] == 0
        assert row["signal"] == "sysinfo"
        assert row["signal_free_bytes"] == said.free_bytes
        assert row["kv_bytes"] == said.kv_bytes


def test_the_summary_says_docker_differs_and_why_with_intervals(swept) -> None:
    out, _, _ = swept
    doc = json.loads((out / "summary.json").read_text())
    comp = doc["comparisons"][0]
    assert comp["variant"] == "docker" and comp["baseline"] == "native"
    # each Docker run reads the image's 64 MiB copy of the weights from disk after the caches
    # were dropped; the native runs find the host's copy warm
    cache = comp["metrics"]["peak_file_bytes"]
    assert cache["significant"] and cache["ci_low"] > 48 << 20
    # the diff of the median runs finds those pages, in the container (its largest part may
    # be another kind: what MemFree lost between runs on a shared machine is noise here)
    median = comp["median_runs"]
    assert median["decomposition"]["page cache"] >= 64 << 20
    assert median["top_file"]["path"] == "/models/weights.bin"
    assert median["top_file"]["cgroup"].startswith("container uvmtrace-sweep-docker-")
    assert median["top_file"]["bytes"] == 64 << 20
    assert median["cause"]["line"].startswith(median["cause"]["what"])
    line = next(x for x in doc["conclusion"] if x.startswith("docker (3 runs)"))
    assert "differs from native" in line and "95% CI" in line and "Main cause" in line


def test_a_memory_variant_limits_the_command_s_own_cgroup(tmp_path, need_bpf) -> None:
    import polars as pl

    out = tmp_path / "limited.parquet"
    with pytest.raises(SystemExit) as exit_:
        main(["record", "-q", "--memory-limit", "200M", "-o", str(out), "--", "true"])
    assert exit_.value.code == 0
    limits = (
        pl.read_parquet(out)
        .filter(pl.col("event") == "memory.limit")
        .get_column("bytes")
        .unique()
        .to_list()
    )
    assert limits == [200 << 20]
