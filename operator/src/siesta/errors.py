"""Errors the CLI turns into one line on stderr and exit status 2."""


class UsageError(Exception):
    """Bad arguments or input: printed as one line, exit status 2."""
