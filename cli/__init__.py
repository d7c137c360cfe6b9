"""uvmtrace's command line: `uvmtrace` (main.py) and one module per subcommand in commands/."""
