"""The error every dataset failure is raised as: missing or unreadable files, bad arrays, a refused download."""


class DataError(Exception):
    """The data asked for cannot be had. The message is one line that names the file or value and says
    what to do (the CLI prints it and exits 2); a line break in a name the user typed is shown as \\n."""

    def __init__(self, message: str):
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))
