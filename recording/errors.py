"""One error type for problems the user can act on; the CLI prints it as one line."""

from __future__ import annotations


class UserError(Exception):
    """A problem we can explain in one line (bad input, missing capability); has an exit code."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class RecordingError(UserError):
    """A file that is not a readable uvmtrace recording."""
