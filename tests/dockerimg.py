"""A tiny local Docker image for tests, built offline: `docker import` of a tarball holding
busybox-static (the same root filesystem the demo's image starts from).

Nothing can be pulled from a registry on the test machines, so tests that need a container use
`busybox_image()` (built once, then reused by tag)."""

from __future__ import annotations

import subprocess

from uvmtrace.tracer.demo_image import busybox_path, busybox_rootfs_tar

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
