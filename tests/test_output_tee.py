"""The tee between the command and the terminal: the command's output is always whole; the copy
the recorder scans for framework log lines may be cut when the recorder lags, and what is cut is
counted (the recording lists it under not_traced)."""

from __future__ import annotations

import os
from pathlib import Path

from uvmtrace.tracer.output_tee import OutputTee


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_recorder_that_never_reads_loses_only_its_copy_and_the_loss_is_counted(
    tmp_path: Path,
) -> None:
    output = b"".join(b"line %07d of the command's output\n" % i for i in range(120_000))
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        tee = OutputTee(sinks=(out.fileno(), err.fileno()))
        with os.fdopen(os.dup(tee.stdout_w), "wb") as command_stdout:
            command_stdout.write(output)  # ~4 MiB: more than the copy pipe holds
        tee.command_started()
        assert tee.proc.wait(timeout=60) == 0
    assert (tmp_path / "out").read_bytes() == output  # the command's output is whole
    copied = read_all(tee.copies[0])
    dropped_stdout, dropped_stderr = tee.dropped()
    assert dropped_stdout > 0
    assert len(copied) + dropped_stdout == len(output)
    assert output.startswith(copied)
    assert dropped_stderr == 0 and read_all(tee.copies[1]) == b""
