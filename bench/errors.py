"""The one exception type the CLI turns into a single line and a non-zero exit."""


class BenchError(Exception):
    """A user-facing error: the message names the file, key or value at fault and what to do."""
