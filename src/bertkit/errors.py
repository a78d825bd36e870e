"""User-facing errors.

Anything a user can cause (a bad file, a bad flag, a config that does not fit) raises `BertkitError` with a
message that names the file, line or field and says what to do. The CLI prints it on one line and exits
with code 2, without a traceback. Bugs in bertkit stay ordinary exceptions with tracebacks.
"""


class BertkitError(Exception):
    """A mistake in the user's input, reported as one line by the CLI (exit code 2)."""


class ConfigError(BertkitError):
    """A config.json or preset with a bad or unknown field."""


class CheckpointError(BertkitError):
    """A model folder or weight file that does not match the model it should build."""


class DataError(BertkitError):
    """A corpus or dataset file that cannot be read as asked."""


def require_file(path, what: str = "data file") -> None:
    """An input that must be a file: a folder or a missing path is a one-line error naming it."""
    from pathlib import Path

    if Path(path).is_dir():
        raise DataError(f"{path} is a folder; give a {what}")
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
