"""The errors a user can cause (a leaf module: everything imports it, it imports nothing). The CLI
prints a `NanorecError` as one line and exits 2: the message names the file (with line and column
where known), the config key or the option, and the problem."""


class NanorecError(Exception):
    """Base class of the expected failures (exit status 2)."""


class DataError(NanorecError):
    """A bad input file or folder: unreadable, malformed, inconsistent with a run."""


class UsageError(NanorecError):
    """A bad command-line value or config key, or a combination that cannot work."""


def one_line(e: BaseException | str, limit: int = 200) -> str:
    """An error's message as one line of at most `limit` characters (runs of whitespace become one
    space), for a message that quotes it; an empty message gives the exception's type name."""
    text = " ".join(str(e).split()) or (type(e).__name__ if isinstance(e, BaseException) else "unknown error")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def show(value, limit: int = 40) -> str:
    """repr of a bad value (a numpy scalar as its Python value), cut so that one error stays one line."""
    text = repr(value.item() if getattr(value, "ndim", None) == 0 and hasattr(value, "item") else value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
