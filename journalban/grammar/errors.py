"""The one error type of the grammar language, always pointing at a place in a file."""

from pathlib import Path


class GrammarError(Exception):
    """A grammar file that cannot be used, or an example that does not hold.

    Carries ``path:line:column`` so an editor can jump to the offending token.
    """

    def __init__(self, path: Path, line: int, column: int, message: str) -> None:
        super().__init__(path, line, column, message)
        self.path = path
        self.line = line
        self.column = column
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"
