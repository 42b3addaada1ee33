"""User-facing errors: the CLI prints these as one line, never as a traceback."""


class CnnzooError(Exception):
    """A problem with the user's input that the message explains and says how to fix."""


class UnknownModelError(CnnzooError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
