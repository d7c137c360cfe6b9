"""A container reads a file baked into its image: the page cache belongs to the image layer's
real inode on the host filesystem, yet the filemap rows carry the path the container sees."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa

from tests.dockerimg import busybox_image

KiB = 1 << 10
WEIGHTS = 512 * KiB
# The shell reads the file itself (`read` is a builtin), so the reading pid is the one that
# holds it open while the tracer resolves paths; then it stays alive for the final drain.
READ_THEN_WAIT = "exec 3</weights.bin; while read -r line <&3; do :; done; echo read; sleep 30"


def build_image_with_weights(tmp: Path) -> str:
    tag = f"uvmtrace-test-weights-{secrets.token_hex(3)}"
    line = b"0123456789abcdef" * 3 + b"\n"  # text lines: `read` consumes them quickly
    (tmp / "weights.bin").write_bytes(line * (WEIGHTS // len(line)))
    (tmp / "Dockerfile").write_text(f"FROM {busybox_image()}\nCOPY weights.bin /weights.bin\n")
    subprocess.run(["docker", "build", "-q", "-t", tag, str(tmp)], check=True, capture_output=True)
    return tag


def drop_layer_cache(tag: str) -> None:
    """The build left the layer file in the page cache: drop it, so the container's read adds
    every page again."""
    info = json.loads(subprocess.run(["docker", "image", "inspect", tag], capture_output=True,
                                     check=True, text=True).stdout)  # fmt: skip
    layer = Path(info[0]["GraphDriver"]["Data"]["UpperDir"]) / "weights.bin"
    fd = os.open(layer, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_a_containers_read_of_its_image_file_is_recorded_with_the_path_it_sees(
    need_bpf: None, need_docker: None
) -> None:
    from uvmtrace.probes.kernel_tracer import KernelTracer

    with tempfile.TemporaryDirectory() as tmp:
        tag = build_image_with_weights(Path(tmp))
    name = f"uvmtrace-overlay-{secrets.token_hex(3)}"
    tracer = KernelTracer(probes={"memcg", "filemap", "proc"})
    tracer.watch_new_cgroups(True)
    batches: list[pa.RecordBatch] = []
    try:
        drop_layer_cache(tag)
        tracer.start()
        docker = subprocess.Popen(
            ["docker", "run", "--rm", "--name", name, tag, "sh", "-c", READ_THEN_WAIT],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert docker.stdout.readline().strip() == "read"
        for _ in range(5):
            batches += tracer.poll(0)
            time.sleep(0.05)
        batches += tracer.stop()  # while the container still holds the file
        metadata = tracer.metadata()
    finally:
        tracer.stop()
        subprocess.run(["docker", "kill", name], capture_output=True)
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
    events = pl.from_arrow(pa.Table.from_batches(batches))
    added = events.filter(
        (pl.col("event") == "filemap_add") & (pl.col("path").cast(pl.String) == "/weights.bin")
    )
    assert added["bytes"].sum() >= 0.9 * WEIGHTS
    # the image layer's own file on the host (gone now, with the image)
    assert metadata["host_paths"]["/weights.bin"].endswith("/diff/weights.bin")
