"""The one exception family users see. The CLI turns it into a message and exit code 2."""


class RecvecError(Exception):
    """A user-facing error: bad input, missing file, unknown id, corrupt artifact.

    ``params`` names the library parameters the message refers to by name (e.g. ``("ef_search",)``);
    the CLI shows them as its flags (``--ef-search``)."""

    def __init__(self, *args, params: tuple[str, ...] = ()):
        super().__init__(*args)
        self.params = tuple(params)


class DataError(RecvecError):
    """Data files that are missing, malformed or of an unknown format."""


class UnknownIdError(RecvecError, KeyError):
    """An external id that the vocabulary does not know."""

    def __init__(self, kind: str, ids):
        self.kind = kind
        self.ids = list(ids)
        shown = ", ".join(shorten(str(i)) for i in self.ids[:10])
        more = f" (and {len(self.ids) - 10} more)" if len(self.ids) > 10 else ""
        super().__init__(f"unknown {kind} id{'s' if len(self.ids) > 1 else ''}: {shown}{more}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class ArtifactError(RecvecError):
    """An index artifact that is missing, corrupt, truncated or of an unsupported version."""


#: How much of a user's input an error message echoes.
SHOWN_CHARS = 80


def shorten(value, limit: int = SHOWN_CHARS) -> str:
    """``str(value)`` for an error message, cut to ``limit`` characters with "…"."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def shorten_path(path, limit: int = 2 * SHOWN_CHARS) -> str:
    """A path for an error message: its start and its end (the file's name) kept, the middle cut."""
    text = str(path)
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "…" + text[len(text) - (limit - head - 1):]


def shown(value, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with "…"."""
    return shorten(repr(value), limit)
