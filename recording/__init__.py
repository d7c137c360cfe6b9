"""The recording format shared by every component: one long table, one schema, one metadata key."""

from importlib.metadata import PackageNotFoundError, version

# Here, not in schema.py, so readers can check a file without importing pyarrow.
SCHEMA_VERSION = 1
METADATA_KEY = b"uvmtrace"  # file-level key-value metadata: JSON object

try:  # written into every recording's metadata (recording/schema.encode_metadata)
    UVMTRACE_VERSION = version("uvmtrace")
except PackageNotFoundError:  # running from a source tree without an install
    UVMTRACE_VERSION = "0.0.0+source"
