"""The small error hierarchy of the runner. Every error carries a one-line, user-facing message."""


class VigieError(Exception):
    """Base class: `str(error)` is a complete one-line message for the user."""

    exit_code = 1


class ConfigError(VigieError):
    """The site config is unreadable or invalid. `problems` holds one line per offending field."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class ModelError(VigieError):
    """A model reference cannot be resolved, verified or loaded."""

    exit_code = 2


class SourceError(VigieError):
    """A camera source cannot be opened or read (bad file, unreachable stream)."""

    exit_code = 4


class StoreError(VigieError):
    """The alert register cannot be opened or written."""

    exit_code = 5


class AuthorizationError(VigieError):
    """Operational analysis outside the prefectoral authorisation (window or cameras)."""

    exit_code = 3


class UsageError(VigieError):
    """A bad command-line argument (unknown alert id, unknown camera...)."""

    exit_code = 2
