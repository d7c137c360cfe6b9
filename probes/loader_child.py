"""Compile and attach the BPF programs in a short-lived child; the recorder keeps only the fds.

BCC compiles the BPF text with the LLVM/clang it links (libLLVM + libclang-cpp): mapped and
touched, plus the heap the compile leaves behind, that is ~150 MB of RSS the recorder would
carry for the whole recording (docs/performance.md). So `KernelTracer.start()` decides the plan
(probes/capabilities: what this host can attach) in the recorder, and this child compiles it,
attaches it (falling back as the plan says), and passes back over a unix socket (SCM_RIGHTS)
every BPF object it made: maps, programs, and the perf-event/link fds that hold the attachments.
The child then exits without BCC's cleanup, so the programs stay attached as long as the
recorder holds those fds, and detach when it closes them (or dies). The recorder reads and
writes the maps through bpf(2) (probes/bpfmaps.py) and the rings through their mappings
(probes/ringbuf.py): it never loads libbcc.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uvmtrace.probes.bpfmaps import BpfMap
from uvmtrace.recording.errors import UserError

if TYPE_CHECKING:
    from uvmtrace.probes.kernel_tracer import KernelTracer

_MAX_MSG = 1 << 20
_FDS_PER_MSG = 250  # the kernel's SCM_MAX_FD is 253
# what an fd of a BPF object reads as in /proc/self/fd; anything else the loader made
# (perf events, bpf_link, raw tracepoint fds) holds an attachment
_NOT_LINKS = ("anon_inode:bpf-map", "anon_inode:bpf-prog", "anon_inode:btf")


@dataclass
class LoadedProbes:
    """What the recorder holds of the loaded programs."""

    maps: dict[str, BpfMap]
    progs: dict[str, int]  # program (function) name -> fd, for its run statistics
    links: list[int]  # fds that keep the programs attached: closing them detaches
    others: list[int] = field(default_factory=list)  # maps and programs (closed last)

    def detach(self) -> None:
        for fd in self.links:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.links = []

    def close(self) -> None:
        self.detach()
        for fd in self.others:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.others = []
        self.maps = {}
        self.progs = {}


def load(tracer: KernelTracer, plan: dict, fallback: dict, maps: list[str]) -> LoadedProbes:
    """Run `tracer.load_here(plan, fallback)` in a child; take over what it attached, and the
    probe states it decided (attached, why). `maps`: the maps the recorder reads or writes."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent:
        with child:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvmtrace.probes.loader_child", str(child.fileno())],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        request = {
            "tracer": tracer.loader_request(),
            "plan": plan,
            "fallback": fallback,
            "maps": maps,
        }
        try:
            parent.sendall(pickle.dumps(request))
            reply, fds = _receive(parent)
        finally:
            proc.wait()
    if reply is None:
        raise UserError(f"the BPF loader exited ({proc.returncode}) before loading the probes")
    tracer.states = reply["states"]
    if "error" in reply:
        for fd in fds:
            os.close(fd)
        raise UserError(reply["error"])
    kinds = reply["kinds"]
    return LoadedProbes(
        maps={name: BpfMap(fds[i]) for name, i in reply["maps"].items()},
        progs={name: fds[i] for name, i in reply["progs"].items()},
        links=[fd for fd, kind in zip(fds, kinds, strict=True) if kind not in _NOT_LINKS],
        others=[fd for fd, kind in zip(fds, kinds, strict=True) if kind in _NOT_LINKS],
    )


def _receive(sock: socket.socket) -> tuple[dict | None, list[int]]:
    msg, fds, flags, _ = socket.recv_fds(sock, _MAX_MSG, _FDS_PER_MSG)
    if not msg:
        return None, []
    if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
        for fd in fds:
            os.close(fd)
        raise UserError("the BPF loader's reply was cut short")
    reply = pickle.loads(msg)
    while len(fds) < reply.get("nfds", 0):
        _, more, _, _ = socket.recv_fds(sock, 16, _FDS_PER_MSG)
        if not more:
            break
        fds.extend(more)
    return reply, fds


def _open_fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own fd, gone
    return out


def _serve(sock: socket.socket) -> None:
    from uvmtrace.probes.kernel_tracer import KernelTracer

    request = pickle.loads(sock.recv(_MAX_MSG))
    before = _open_fds()
    tracer = KernelTracer.from_loader_request(request["tracer"])
    reply: dict[str, Any]
    try:
        bpf = tracer.load_here(request["plan"], request["fallback"])
    except UserError as exc:
        reply = {"error": str(exc)}
    except Exception as exc:  # BCC's own errors: one line, the recording goes on without probes
        reply = {"error": f"loading the BPF programs failed: {str(exc).splitlines()[0]}"}
    else:
        made = {fd: what for fd, what in _open_fds().items() if fd not in before}
        fds = sorted(fd for fd, what in made.items() if what.startswith("anon_inode:"))
        index = {fd: i for i, fd in enumerate(fds)}
        maps = {}
        for name in request["maps"]:
            try:
                maps[name] = index[bpf.get_table(name.encode()).map_fd]
            except KeyError:
                continue  # not compiled in this plan
        progs = {}
        for state in tracer.states.values():
            for att in state.links:
                fn = bpf.funcs.get(att.fn.encode())
                if fn is not None and fn.fd in index:
                    progs[att.fn] = index[fn.fd]
        reply = {
            "maps": maps,
            "progs": progs,
            "kinds": [made[fd] for fd in fds],
            "nfds": len(fds),
        }
    reply["states"] = tracer.states
    if "error" in reply:
        sock.sendall(pickle.dumps(reply))
        return
    socket.send_fds(sock, [pickle.dumps(reply)], fds[:_FDS_PER_MSG])
    for start in range(_FDS_PER_MSG, len(fds), _FDS_PER_MSG):
        socket.send_fds(sock, [b"."], fds[start : start + _FDS_PER_MSG])


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        _serve(sock)
    finally:
        sock.close()
        sys.stdout.flush()
        sys.stderr.flush()
        # No BCC cleanup at exit: the recorder holds the programs now.
        os._exit(0)


if __name__ == "__main__":
    main()
