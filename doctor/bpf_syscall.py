"""The raw bpf(2) calls doctor needs, through ctypes: no BCC, so a broken BCC install cannot hide
whether the kernel itself lets us load programs.

Each helper returns an fd (closed by the caller) or raises OSError with the kernel's errno, which
is what tells "not allowed" (EPERM) from "not built in" (ENOSYS) from "this attach type is not
supported here" (EINVAL, ENOTSUPP). The syscall itself is the recorder's (probes/bpfmaps.bpf).
"""

from __future__ import annotations

import ctypes

from uvmtrace.probes.bpfmaps import bpf

BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17

BPF_MAP_TYPE_ARRAY = 2
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FENTRY = 24

# `r0 = 0; exit`: the smallest program every verifier accepts.
_RETURN_ZERO = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])


class _MapCreateAttr(ctypes.Structure):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
    ]


class _ProgLoadAttr(ctypes.Structure):
    # Layout of the BPF_PROG_LOAD member of `union bpf_attr` up to attach_btf_obj_fd; the kernel
    # accepts a shorter attr and treats the rest as zero.
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("func_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("line_info_cnt", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
    ]


class _RawTracepointOpenAttr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32)]


def create_array_map() -> int:
    attr = _MapCreateAttr(BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0)
    return bpf(BPF_MAP_CREATE, attr)


def load_program(
    prog_type: int, *, expected_attach_type: int = 0, attach_btf_id: int = 0
) -> tuple[int, str]:
    """Load `r0 = 0; exit` as `prog_type`; returns (fd, verifier log). The log is what explains
    an EINVAL, so it is attached to the error too."""
    insns = ctypes.create_string_buffer(_RETURN_ZERO, len(_RETURN_ZERO))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    attr = _ProgLoadAttr()
    attr.prog_type = prog_type
    attr.insn_cnt = len(_RETURN_ZERO) // 8
    attr.insns = ctypes.addressof(insns)
    attr.license = ctypes.addressof(license_)
    attr.log_level = 1
    attr.log_size = len(log)
    attr.log_buf = ctypes.addressof(log)
    attr.prog_name = b"uvmtrace_doctor"
    attr.expected_attach_type = expected_attach_type
    attr.attach_btf_id = attach_btf_id
    try:
        fd = bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        text = log.value.decode(errors="replace").strip()
        raise OSError(
            exc.errno, exc.strerror + (f": {text.splitlines()[-1]}" if text else "")
        ) from None
    return fd, log.value.decode(errors="replace")


def attach_tracing(prog_fd: int) -> int:
    """Attach a loaded fentry program (BPF_RAW_TRACEPOINT_OPEN with no name); returns the link fd.
    This is the step that builds the trampoline, so it is the real test of fentry support."""
    return bpf(BPF_RAW_TRACEPOINT_OPEN, _RawTracepointOpenAttr(0, prog_fd))
