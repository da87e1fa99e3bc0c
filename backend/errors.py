"""The one exception type users see: its message is a single line, printed without a traceback."""


class XdpscopeError(Exception):
    """A failure with a clear one-line message for the user (exit code 1 in the CLI)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(" ".join(str(message).split()) if "\n" not in str(message) else str(message))
        self.code = code
