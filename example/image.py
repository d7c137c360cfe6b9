"""The demo's container image, built offline, and the command that runs the workload in it.

No registry is needed: a base image is `docker import`ed from a tarball holding busybox-static,
then `docker build` of `FROM base` + `COPY weights.bin /models/weights.bin` bakes the weights in.
The image's copy is a different file (another inode, in the image's top layer) from the host's
copy, which is the point: reading it fills the page cache again, charged to the container.

The workload runs on the host's own Python, bind-mounted read-only at the same paths: the Python
prefix (interpreter, standard library), and exactly the shared libraries that the interpreter and
the extension modules the workload loads link to (found with ldd), each file mounted where the
loader looks for it. Nothing else of the host is visible in the container.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from uvmtrace.recording.errors import UserError

BASE_TAG = "uvmtrace-demo-base:busybox"
IMAGE_REPO = "uvmtrace-demo"
WEIGHTS_IN_IMAGE = "/models/weights.bin"
KVSIZER_IN_CONTAINER = "/opt/uvmtrace/kvsizer.py"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox")
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


@dataclass(frozen=True)
class DemoImage:
    tag: str
    weights_host_path: Path | None  # the image's copy of the weights, as a host file (overlay2)


def docker_available() -> str | None:
    """None when a Docker daemon answers, else why not (one line)."""
    if shutil.which("docker") is None:
        return "no docker command"
    try:
        r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no Docker daemon ({last})"
    return None


def _docker(*args: str, stdin: bytes | None = None, timeout: float = 300) -> str:
    r = subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"docker {args[0]} failed: {err[-1] if err else r.returncode}")
    return r.stdout.decode(errors="replace")


def _image_exists(tag: str) -> bool:
    r = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=30)
    return r.returncode == 0


def busybox_path() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path):
            return path
    raise UserError("the demo image needs busybox-static (apt-get install busybox-static)")


def busybox_rootfs_tar(busybox: str) -> bytes:
    """A minimal root filesystem: /bin/busybox and a link per applet, empty system dirs."""
    listing = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc", "models"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in listing.stdout.split():
            if applet != "busybox" and "/" not in applet:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
    return buf.getvalue()


def _weights_key(weights: Path) -> str:
    st = os.stat(weights)
    return f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"


def _current(tag: str, label: str, key: str) -> bool:
    """Whether `tag` exists and was built from `key` (an older build is removed); the base
    image is imported first."""
    if not _image_exists(BASE_TAG):
        _docker("import", "-", BASE_TAG, stdin=busybox_rootfs_tar(busybox_path()))
    if _image_exists(tag):
        labels = json.loads(_docker("image", "inspect", "-f", "{{json .Config.Labels}}", tag))
        if (labels or {}).get(label) == key:
            return True
        _docker("image", "rm", "-f", tag)
    return False


def _weights_into(ctx: str, weights: Path) -> None:
    """A hard link keeps the build context free of a second on-disk copy; docker reads it
    through the client's tar stream either way."""
    try:
        os.link(weights, Path(ctx, "weights.bin"))
    except OSError:
        shutil.copyfile(weights, Path(ctx, "weights.bin"))


def build_image(weights: Path) -> DemoImage:
    """The base image (once) and an image with `weights` baked in (again when they change)."""
    key = _weights_key(weights)
    tag = f"{IMAGE_REPO}:{os.stat(weights).st_size}"
    if not _current(tag, "uvmtrace.weights", key):
        with tempfile.TemporaryDirectory(prefix="uvmtrace-demo-ctx-") as ctx:
            _weights_into(ctx, weights)
            Path(ctx, "Dockerfile").write_text(
                f"FROM {BASE_TAG}\n"
                f'LABEL uvmtrace.weights="{key}"\n'
                f"COPY weights.bin {WEIGHTS_IN_IMAGE}\n"
            )
            _docker("build", "-q", "-t", tag, ctx, timeout=600)
    return DemoImage(tag, _layer_file(tag, WEIGHTS_IN_IMAGE))


def _layer_file(tag: str, path_in_image: str) -> Path | None:
    """Where overlay2 keeps a file of the image's top layer on the host (None elsewhere)."""
    try:
        data = json.loads(_docker("image", "inspect", "-f", "{{json .GraphDriver}}", tag))
    except (UserError, ValueError):
        return None
    if data.get("Name") != "overlay2":
        return None
    upper = (data.get("Data") or {}).get("UpperDir")
    if not upper:
        return None
    candidate = Path(upper) / path_in_image.lstrip("/")
    return candidate if candidate.is_file() else None


# ---- the host's Python inside the container ------------------------------------------------


def _ldd(paths: list[str]) -> set[str]:
    """Shared libraries (as the loader names them) that these ELF files need."""
    if shutil.which("ldd") is None or not paths:
        return set()
    r = subprocess.run(["ldd", *paths], capture_output=True, text=True, timeout=60)
    found = set()
    for line in r.stdout.splitlines():
        if "not found" in line:
            continue
        m = _LDD_PATH.search(line)
        if m:
            found.add(m.group(1))
    return found


# Imports the workload module (its top level only) and lists the extension modules now mapped.
_LIST_EXTENSIONS = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("kvsizer", sys.argv[1])
module = sys.modules["kvsizer"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for line in open("/proc/self/maps"):
    path = line.split()[-1]
    if path.startswith("/") and ".so" in path and "lib-dynload" in path:
        print(path)
"""


def _extension_modules_of_the_workload() -> list[str]:
    from uvmtrace.example import kvsizer

    r = subprocess.run(
        [sys.executable, "-I", "-c", _LIST_EXTENSIONS, kvsizer.__file__],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return sorted(set(r.stdout.split())) if r.returncode == 0 else []


def shim_library() -> str | None:
    """The shim `uvmtrace record` preloads into containers, if it builds here."""
    try:
        from uvmtrace.shim.build import build_shim

        return str(build_shim())
    except Exception:  # no shim, no compiler: record then runs without it, and says so
        return None


def python_mounts(preloaded: list[str] | None = None) -> list[tuple[str, str]]:
    """(host path, container path) pairs that make the host's Python run in a bare image.

    `preloaded`: libraries that will be LD_PRELOADed in the container (the shim): what they
    link to is mounted too.
    """
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    mounts = {(p, p) for p in prefixes}
    exe = os.path.realpath(sys.executable)
    if not any(exe.startswith(p + os.sep) for p in prefixes):
        mounts.add((exe, exe))
    for lib in _ldd([exe, *_extension_modules_of_the_workload(), *(preloaded or [])]):
        if any(lib.startswith(p + os.sep) for p in prefixes):
            continue
        mounts.add((os.path.realpath(lib), lib))
    if len(mounts) == len(prefixes):  # no ldd: fall back to the usual library directories
        for d in ("/lib", "/lib64", "/usr/lib", "/usr/lib64"):
            if os.path.isdir(d):
                mounts.add((os.path.realpath(d), d))
    return sorted(mounts, key=lambda m: m[1])


def docker_run_argv(
    image: DemoImage,
    workload_args: list[str],
    *,
    name: str,
    memory: str | None = None,
) -> list[str]:
    """`docker run` of the KV sizer in the demo image, on the host's Python."""
    from uvmtrace.example import kvsizer

    argv = ["docker", "run", "--rm", "--name", name, "--network", "none"]
    if memory:
        argv += ["--memory", memory]
    shim = shim_library()
    for host, inside in python_mounts([shim] if shim else None):
        argv += ["-v", f"{host}:{inside}:ro"]
    argv += ["-v", f"{os.path.realpath(kvsizer.__file__)}:{KVSIZER_IN_CONTAINER}:ro"]
    python = os.path.realpath(sys.executable)
    return argv + [image.tag, python, "-I", KVSIZER_IN_CONTAINER, *workload_args]


# ---- a self-contained image (its own Python), and its root filesystem for chroot -------------

PYTHON_IN_IMAGE = "/usr/local/bin/python3"  # a link to the interpreter, at its host path
# parts of the standard library the workload never imports (tests alone are ~30 MiB)
_STDLIB_SKIP = ("site-packages", "test", "tests", "__pycache__", "idlelib", "tkinter",
                "turtledemo", "ensurepip", "lib2to3", "pydoc_data")  # fmt: skip


def python_files() -> list[tuple[str, str]]:
    """(host path, path in the image) for the host's Python without its packages: the
    interpreter, the standard library and the shared libraries they and the shim link to, each
    at its host path (the interpreter finds its library from its own location)."""
    exe = os.path.realpath(sys.executable)
    stdlib = os.path.dirname(os.__file__)
    files = {(exe, exe), (stdlib, stdlib)}
    shim = shim_library()
    for lib in _ldd([exe, *_extension_modules_of_the_workload(), *([shim] if shim else [])]):
        files.add((os.path.realpath(lib), lib))
    return sorted(files, key=lambda f: f[1])


def _copy_into(root: Path, host: str, inside: str) -> None:
    dest = root / inside.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.isdir(host):
        shutil.copytree(host, dest, symlinks=True, ignore=shutil.ignore_patterns(*_STDLIB_SKIP))
    else:
        shutil.copy2(host, dest)


def build_self_contained_image(weights: Path, tag: str) -> DemoImage:
    """The demo image with the workload's own Python inside (busybox, the interpreter and its
    standard library, kvsizer.py at KVSIZER_IN_CONTAINER, the weights): it runs without any bind
    mount, and its exported root filesystem runs under chroot."""
    from uvmtrace.example import kvsizer

    key = f"{_weights_key(weights)}-{sys.version_info[:3]}-{os.path.getmtime(kvsizer.__file__)}"
    if not _current(tag, "uvmtrace.content", key):
        with tempfile.TemporaryDirectory(prefix=".ctx-", dir=weights.parent) as ctx:
            root = Path(ctx, "rootfs")
            for host, inside in python_files():
                _copy_into(root, host, inside)
            link = root / PYTHON_IN_IMAGE.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.realpath(sys.executable))
            _copy_into(root, os.path.realpath(kvsizer.__file__), KVSIZER_IN_CONTAINER)
            _weights_into(ctx, weights)
            Path(ctx, "Dockerfile").write_text(
                f"FROM {BASE_TAG}\n"
                f'LABEL uvmtrace.content="{key}"\n'
                "COPY rootfs/ /\n"
                f"COPY weights.bin {WEIGHTS_IN_IMAGE}\n"
            )
            _docker("build", "-q", "-t", tag, ctx, timeout=600)
    return DemoImage(tag, _layer_file(tag, WEIGHTS_IN_IMAGE))


def export_rootfs(tag: str, dest: Path) -> Path:
    """The image's root filesystem unpacked at `dest` (`docker export` of a created container),
    again only when the image changed."""
    image_id = _docker("image", "inspect", "-f", "{{.Id}}", tag).strip()
    marker = dest / ".uvmtrace-image"
    if marker.is_file() and marker.read_text().strip() == image_id:
        return dest
    if dest.is_symlink():
        raise UserError(f"refusing to use {dest}: it is a symlink")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(mode=0o755, parents=True)
    cid = _docker("create", tag, "/bin/true").strip()
    try:
        # GNU tar as root keeps owners, modes and links exactly as the image has them
        exported = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
        untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=exported.stdout,
                               capture_output=True, timeout=600)  # fmt: skip
        if exported.wait() != 0 or untar.returncode != 0:
            why = untar.stderr.decode(errors="replace").strip().splitlines()
            raise UserError(f"unpacking {tag} failed: {why[-1] if why else 'docker export'}")
    finally:
        _docker("rm", "-f", cid)
    marker.write_text(image_id + "\n")
    return dest
