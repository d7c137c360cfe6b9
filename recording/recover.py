"""Rebuild a recording from a spool: every complete batch, plus the metadata as last saved."""

from __future__ import annotations

from pathlib import Path

from uvmtrace.recording.errors import UserError
from uvmtrace.recording.safefs import check_writable_target
from uvmtrace.recording.spool import read_spool
from uvmtrace.recording.writer import RecordingWriter


def recover(spool_dir: Path, output: Path, owner: tuple[int, int] | None = None) -> tuple[int, int]:
    """Returns (rows recovered, bytes of torn tail dropped). `owner`: who gets the file when we
    run as root (the user behind sudo, as for `record`)."""
    meta, batches, torn = read_spool(spool_dir)
    check_writable_target(output)
    if output.exists():
        raise UserError(f"{output} exists; choose another -o or remove it")
    writer = RecordingWriter(output, meta, spool=False, owner=owner)
    try:
        for batch in batches:
            writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    writer.update_metadata(recovered=True, recovered_torn_bytes=torn[0])
    writer.close()
    return writer.rows, torn[0]
