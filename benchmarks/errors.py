"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user (unknown name, bad value, missing file, unwritable folder).

    The message must fit on one line and say what to do about it.
    """
