"""The errors the CLI turns into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input from the user, found by the harness or the CLI (unknown name, bad value, missing file,
    unwritable folder). The message says what to do about it, on one line: a line break in a value the
    user typed is shown as \\n."""

    def __init__(self, message: str):
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


def user_errors() -> tuple[type[Exception], ...]:
    """Every layer's bad-input errors: this one's, the datasets' and the methods' (imported when an error is
    being handled, so that the CLI's start-up imports neither layer)."""
    from datasets.errors import DataError
    from methods.errors import ConfigError, TrainingDiverged

    return UserError, DataError, ConfigError, TrainingDiverged
