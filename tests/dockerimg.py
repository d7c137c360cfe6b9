"""Build a tiny local Docker image offline: `docker import` of a tarball holding busybox-static.

Nothing can be pulled from a registry on the test machines, so tests that need a container use
`busybox_image()` (built once, then reused by tag)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile

BUSYBOX_TAG = "uvmtrace-test-busybox"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def image_exists(tag: str) -> bool:
    r = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=60)
    return r.returncode == 0


def busybox_rootfs_tar(busybox: str) -> bytes:
    """A root filesystem: /bin/busybox, one symlink per applet, empty /tmp /proc /sys /dev."""
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for name in applets.stdout.split():
            if name == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def busybox_image(tag: str = BUSYBOX_TAG) -> str:
    """Return the tag of a local busybox image, importing it first if needed."""
    if image_exists(tag):
        return tag
    busybox = next((p for p in BUSYBOX_CANDIDATES if os.path.isfile(p)), shutil.which("busybox"))
    if busybox is None:
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    subprocess.run(
        ["docker", "import", "-c", 'CMD ["/bin/sh"]', "-", tag],
        input=busybox_rootfs_tar(busybox),
        capture_output=True,
        check=True,
        timeout=300,
    )
    return tag
