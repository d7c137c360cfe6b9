"""The recorder: the recording session, launching the command, samplers, containers, attach."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("uvmtrace")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
