"""One module per `uvmtrace` subcommand; each exposes `command` (a click command)."""
