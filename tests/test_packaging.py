"""`pip install .` gives a complete package: every module and every BPF/C source the components
ship, the `uvmtrace` console script, and a dependency list that covers every third-party import.

The install goes into a plain virtualenv (no system site-packages) with --no-deps, so nothing from
the development environment can hide a file that the wheel forgot."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parent.parent
# folder -> package, as pyproject.toml maps them (the one place the layout is declared)
PACKAGE_DIR = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"
]
COMPONENTS = {folder: package for package, folder in PACKAGE_DIR.items()}
# Import name -> distribution, for the dependencies whose names differ.
DIST_OF = {"cuda": "cuda-python", "pynvml": "nvidia-ml-py", "yaml": "pyyaml", "PIL": "pillow"}
# Found at run time from the system, never from PyPI (see host/bcc.py).
SYSTEM_PROVIDED = {"bcc"}


def source_files() -> list[Path]:
    """What a checkout holds: committed files plus new ones git does not ignore."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [REPO / p for p in out.splitlines() if (REPO / p).is_file()]


def shipped(suffixes: tuple[str, ...]) -> dict[str, Path]:
    """{path inside the wheel: source file} for the components' files with these suffixes."""
    out = {}
    for path in source_files():
        rel = path.relative_to(REPO)
        if rel.parts[0] in COMPONENTS and path.suffix in suffixes:
            package = COMPONENTS[rel.parts[0]].replace(".", "/")
            out["/".join((package, *rel.parts[1:]))] = path
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (the build must not litter the repository)."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    for path in source_files():
        dest = src / path.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = (tmp / "dist").glob("uvmtrace-*.whl")
    return built


def test_the_wheel_holds_every_module_and_every_bpf_and_c_source(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = shipped((".py", ".c", ".h"))
    assert not [p for p in expected if p not in names], "files the wheel forgot"
    assert any(p.endswith(".c") for p in expected if p.startswith("uvmtrace/probes/")), (
        "no BPF source in probes/ yet"
    )


def test_pip_install_into_a_plain_venv_gives_importable_packages_and_the_script(
    wheel: Path, tmp_path: Path
) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=True, system_site_packages=False)
    py = env / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Package __init__s import nothing third-party, so they load without the dependencies; the
    # other modules are located (not executed) to prove they were installed.
    modules = sorted(
        p.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for p in shipped((".py",))
    )
    check = (
        "import importlib, importlib.util, sys\n"
        f"for pkg in {sorted(COMPONENTS.values())!r}: importlib.import_module(pkg)\n"
        f"missing = [m for m in {modules!r} if importlib.util.find_spec(m) is None]\n"
        "assert not missing, missing\n"
        "import uvmtrace.recording, uvmtrace.tracer\n"
        "assert uvmtrace.tracer.__file__.startswith(sys.prefix), uvmtrace.tracer.__file__\n"
        "print(uvmtrace.recording.UVMTRACE_VERSION)\n"
    )
    proc = subprocess.run([py, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.strip()
        == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    )
    script = env / "bin" / "uvmtrace"
    assert script.exists()
    assert "uvmtrace.cli.main" in script.read_text()


def test_every_third_party_import_is_a_declared_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {
        d.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for d in project["dependencies"]
    }
    stdlib = set(sys.stdlib_module_names)
    undeclared = {}
    for wheel_path, path in shipped((".py",)).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                if root in stdlib or root == "uvmtrace" or root in SYSTEM_PROVIDED:
                    continue
                if DIST_OF.get(root, root).lower().replace("_", "-") not in declared:
                    undeclared.setdefault(root, wheel_path)
    assert not undeclared, f"imported but not in pyproject dependencies: {undeclared}"
