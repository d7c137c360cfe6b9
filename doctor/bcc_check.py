"""Is BCC importable, and can it compile and load a program on this kernel?

The compile runs in a child Python (`python -m uvmtrace.doctor.bcc_check`): LLVM inside
libbcc is heavy, can take seconds, and a broken install can crash the process; doctor must survive
and report it. The child prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from uvmtrace.doctor.result import Check, missing, ok
from uvmtrace.host.bcc import import_bcc  # the recorder's own finder

INSTALL = "apt-get install python3-bpfcc bpfcc-tools (or: sudo scripts/setup-host)"
COMPILE_TIMEOUT_S = 120

# Touches a tracepoint's generated struct, so the kernel headers are really exercised.
PROGRAM = """
TRACEPOINT_PROBE(sched, sched_process_exit) { return args->pid == 0; }
"""


def check_bcc_import() -> tuple[Check, bool]:
    """(the check, whether BCC imported)."""
    try:
        bcc = import_bcc()
    except Exception as exc:  # UserError from the finder, ImportError, OSError (libbcc.so)
        return missing("BCC", f"cannot import bcc: {exc}", INSTALL), False
    version = getattr(bcc, "__version__", "?")
    return ok("BCC", f"bcc {version} from {Path(bcc.__file__).parent}"), True


def check_bcc_compiles() -> Check:
    name = "BCC compiles"
    if os.geteuid() != 0:
        return missing(name, "loading a BPF program needs root", "run as root")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "uvmtrace.doctor.bcc_check"],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return missing(name, f"compiling took over {COMPILE_TIMEOUT_S} s", "check libbcc/LLVM")
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return missing(name, f"the compile crashed: {tail}", INSTALL)
    if answer["ok"]:
        return ok(name, f"compiled and loaded a tracepoint program in {answer['seconds']:.1f} s")
    if "super-user" in answer["error"] or "Operation not permitted" in answer["error"]:
        return missing(name, f"{answer['error']} (BPF not permitted)", "run as a full root")
    return missing(
        name,
        f"{answer['error']}",
        "install kernel headers: apt-get install linux-headers-$(uname -r) "
        "(or: sudo scripts/setup-host, which links the nearest)",
    )


def _compile_here() -> dict[str, object]:
    started = time.monotonic()
    try:
        bcc = import_bcc()
        prog = bcc.BPF(text=PROGRAM)
        prog.load_func("tracepoint__sched__sched_process_exit", bcc.BPF.TRACEPOINT)
        prog.cleanup()
    except Exception as exc:
        # BCC's own message for missing headers is one line; keep the first one.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"ok": False, "error": first}
    return {"ok": True, "seconds": time.monotonic() - started}


if __name__ == "__main__":
    print(json.dumps(_compile_here()), flush=True)
