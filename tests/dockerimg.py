"""A tiny local Docker image for tests, built offline: `docker import` of a tarball holding
busybox-static (the same root filesystem the demo's image starts from).

Nothing can be pulled from a registry on the test machines, so tests that need a container use
`busybox_image()` (built once, then reused by tag)."""

from __future__ import annotations

import subprocess

from uvmtrace.example.image import busybox_path, busybox_rootfs_tar

BUSYBOX_TAG = "uvmtrace-test-busybox"


def image_exists(tag: str) -> bool:
    r = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=60)
    return r.returncode == 0


def busybox_image(tag: str = BUSYBOX_TAG) -> str:
    """Return the tag of a local busybox image, importing it first if needed."""
    if not image_exists(tag):
        subprocess.run(
            ["docker", "import", "-c", 'CMD ["/bin/sh"]', "-", tag],
            input=busybox_rootfs_tar(busybox_path()),
            capture_output=True,
            check=True,
            timeout=300,
        )
    return tag


def image_of_files(tag: str, files: dict[str, str], cmd: list[str]) -> str:
    """An image holding only `files` (path inside -> host file, copied with its real content),
    imported from a tarball: what a minimal distroless or Alpine-like image ships."""
    import io
    import json
    import os
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for inside, host in sorted(files.items()):
            tar.add(os.path.realpath(host), arcname=inside.lstrip("/"))
    subprocess.run(
        ["docker", "import", "-c", f"CMD {json.dumps(cmd)}", "-", tag],
        input=buf.getvalue(),
        capture_output=True,
        check=True,
        timeout=300,
    )
    return tag
