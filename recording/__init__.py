"""The recording format shared by every component: one long table, one schema, one metadata key."""

# Here, not in schema.py, so readers can check a file without importing pyarrow.
SCHEMA_VERSION = 1
METADATA_KEY = b"uvmtrace"  # file-level key-value metadata: JSON object
