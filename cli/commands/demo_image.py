"""`uvmtrace demo-image`: the demo workload's image with its own Python, and its root filesystem
(what examples/sweep-demo.toml runs natively, in Docker and under chroot)."""

from __future__ import annotations

from pathlib import Path

import click

from uvmtrace.cli.commands.demo import _size
from uvmtrace.example import image as demo_image
from uvmtrace.example import kvsizer
from uvmtrace.recording.errors import UserError

HELP = """Build the demo's KV-cache sizer as a self-contained image, offline: busybox, the host's
Python (interpreter and standard library), the sizer at /opt/uvmtrace/kvsizer.py and the
weights at /models/weights.bin; then unpack the image's root filesystem for chroot.

Writes OUT/weights.bin (the host's copy) and OUT/rootfs (the image's files). The image is
rebuilt, and the root filesystem unpacked again, only when the weights or Python changed.

\b
Example:
  sudo uvmtrace demo-image --out /var/tmp/sweep-setup --tag uvmtrace-sweep-demo
"""


@click.command("demo-image", help=HELP)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory for the weights and the root filesystem.")  # fmt: skip
@click.option("--tag", default="uvmtrace-sweep-demo:latest", show_default=True,
              help="The image's tag.")  # fmt: skip
@click.option("--weights-size", default="256M", show_default=True, callback=_size,
              help="Size of the weights file.")  # fmt: skip
@click.option("--no-rootfs", is_flag=True, help="Only the image.")
def command(out: Path, tag: str, weights_size: int, no_rootfs: bool) -> None:
    why = demo_image.docker_available()
    if why is not None:
        raise UserError(f"the demo image needs Docker: {why}")
    if out.is_symlink():
        raise UserError(f"refusing to use {out}: it is a symlink")
    out.mkdir(mode=0o755, parents=True, exist_ok=True)
    weights = (out / "weights.bin").absolute()
    if weights.is_symlink():
        raise UserError(f"refusing to use {weights}: it is a symlink")
    if weights.exists() and weights.stat().st_size != weights_size:
        weights.unlink()
    try:
        kvsizer.ensure_weights(str(weights), weights_size)
    except kvsizer.KvSizerError as exc:
        raise UserError(str(exc)) from None
    image = demo_image.build_self_contained_image(weights, tag)
    click.echo(f"image {image.tag}: weights at {demo_image.WEIGHTS_IN_IMAGE}, python at "
               f"{demo_image.PYTHON_IN_IMAGE}")  # fmt: skip
    if not no_rootfs:
        root = demo_image.export_rootfs(image.tag, out / "rootfs")
        click.echo(f"root filesystem of {image.tag}: {root}")
