"""Finding BCC: its Python module (even when uvmtrace runs from a venv or another Python) and the
kernel headers it compiles against.

Debian/Ubuntu ship BCC's Python binding as `python3-bpfcc` in the system's dist-packages; it is
pure Python over libbcc, so any Python 3 can import it once that directory is on the path.
"""

from __future__ import annotations

import glob
import importlib
import os
import platform
import sys
from types import ModuleType

from uvmtrace.recording.errors import UserError

_SYSTEM_DIRS = (
    "/usr/lib/python3/dist-packages",
    *sorted(glob.glob("/usr/lib/python3.*/site-packages")),
    *sorted(glob.glob("/usr/local/lib/python3*/dist-packages")),
)

INSTALL_HINT = (
    "apt-get install python3-bpfcc linux-headers-$(uname -r)"
    " (Fedora/RHEL: dnf install python3-bcc kernel-devel)"
)


def import_bcc() -> ModuleType:
    """Return the `bcc` module, adding the system's dist-packages to the path if needed; a
    one-line UserError when it is not installed or not usable."""
    try:
        return importlib.import_module("bcc")
    except ImportError:
        pass
    for directory in _SYSTEM_DIRS:
        if os.path.isfile(os.path.join(directory, "bcc", "__init__.py")):
            if directory not in sys.path:
                sys.path.append(directory)
            try:
                return importlib.import_module("bcc")
            except (ImportError, OSError) as exc:  # OSError: libbcc.so missing
                raise UserError(
                    f"BCC found in {directory} but unusable ({exc}); {INSTALL_HINT}"
                ) from None
    raise UserError(f"BCC (eBPF) is not installed; {INSTALL_HINT}")


def kernel_headers_dir() -> str | None:
    """The kernel build headers BCC compiles against (/lib/modules/RELEASE/build, else
    .../source), or None when absent."""
    for name in ("build", "source"):
        path = f"/lib/modules/{platform.release()}/{name}"
        if os.path.isdir(os.path.join(path, "include")):
            return path
    return None
