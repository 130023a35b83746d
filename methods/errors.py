"""The errors the methods layer raises on its own account. Both carry a one-line message that names the
value and what to change; the CLI prints it and exits 2."""


class ConfigError(ValueError):
    """A method, network or training setting that cannot run: an unknown name, an option a method does not
    have, a value out of range, a schedule that does not fit in the epochs. One line: a line break in a
    value the user typed is shown as \\n."""

    def __init__(self, message: str):
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


class TrainingDiverged(ArithmeticError):
    """Training produced a non-finite loss or non-finite growth statistics (the learning rate is too high
    for this network, most often)."""
