"""One module per `uvmtrace` subcommand; each exposes `command` (a click command).
`report_options` holds the options `report` and `diff` share."""
