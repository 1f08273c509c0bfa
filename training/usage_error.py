"""The one exception type a command raises for bad user input; the CLI prints it without a traceback."""


class UsageError(Exception):
    """Bad input from the user: a missing file, a malformed flag, a config that does not fit the data."""
