"""`uvmtrace headroom`: the memory a program in a cgroup could really get now."""

from __future__ import annotations

import json

import click

from uvmtrace.tracer.headroom import Headroom, PageCache, headroom

HELP = """The memory a program could really get now, and what it is made of.

MemFree (what sysinfo() and cudaMemGetInfo on a unified-memory GPU report) misses the clean page
cache a program's own cgroup could drop at once; MemAvailable counts every cgroup's cache as
free. The honest figure counts only the clean, unmapped page cache charged to the program's
cgroup, capped by the cgroup's limit minus its usage. Python: uvmtrace.tracer.headroom.headroom().

\b
Examples:
  uvmtrace headroom
  uvmtrace headroom --container my-server --json
  uvmtrace headroom --cgroup /docker/3f2a...
"""


@click.command("headroom", help=HELP)
@click.option("--pid", type=click.IntRange(1), help="The memory cgroup of this process.")
@click.option("--container", help="The memory cgroup of this docker/podman container.")
@click.option("--cgroup", help="A memory cgroup: a path in the hierarchy or under /sys/fs/cgroup.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (bytes).")
def command(pid: int | None, container: str | None, cgroup: str | None, as_json: bool) -> None:
    room = headroom(pid=pid, container=container, cgroup=cgroup)
    if as_json:
        click.echo(json.dumps(room.as_dict(), indent=2))
    else:
        click.echo(render(room))


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 30):,.2f} GiB"


def _cache_lines(title: str, c: PageCache) -> list[str]:
    return [
        f"  {title}: {_gib(c.total)}",
        f"    clean, unmapped (reclaimable now)   {_gib(c.clean_unmapped)}",
        f"    mapped (only once unmapped)         {_gib(c.mapped)}",
        f"    dirty or under write-back           {_gib(c.dirty)}",
        f"  {'shmem (not reclaimable)':<37} {_gib(c.shmem)}",
        f"  {'anonymous (not reclaimable)':<37} {_gib(c.anon)}",
    ]


def render(room: Headroom) -> str:
    where = room.cgroup if room.cgroup is not None else "(no memory cgroup)"
    lines = [
        f"headroom of cgroup {where}"
        + (f" (v{room.cgroup_version})" if room.cgroup_version else "")
    ]
    lines += [
        f"  {'MemFree (sysinfo freeram)':<37} {_gib(room.mem_free)}",
        f"  {'MemAvailable (every cgroup cache)':<37} {_gib(room.mem_available)}",
    ]
    if room.cgroup_cache is not None:
        lines += _cache_lines("page cache charged to the cgroup", room.cgroup_cache)
        limit = (
            f"{_gib(room.cgroup_limit)} at {room.cgroup_limit_at}"
            if room.cgroup_limit is not None
            else "no limit"
        )
        lines.append(f"  {'cgroup usage / limit':<37} {_gib(room.cgroup_usage)} / {limit}")
        lines.append(f"  {'cgroup limit - usage':<37} {_gib(room.cgroup_room)}")
    lines.append(f"  host page cache: {_gib(room.host_cache.total)}, "
                 f"{_gib(room.host_cache.clean_unmapped)} clean and unmapped")  # fmt: skip
    lines.append(f"  {'honest headroom':<37} {_gib(room.honest_bytes)}")
    lines.append(f"  = {room.formula}")
    lines += [f"  note: {n}" for n in room.notes]
    return "\n".join(lines)
