"""The errors a user can cause. A leaf module: everything imports it, it imports nothing.

The CLI prints any `NanorecError` as one line (`nanorec COMMAND: error: ...`)
and exits with status 2; the message names the file (with line and column
where known), the config key or the option, and the problem. Anything else
that escapes is a bug: one line, exit 1, and `NANOREC_DEBUG=1` shows the
traceback.
"""


class NanorecError(Exception):
    """Base class of the expected failures (exit status 2)."""


class DataError(NanorecError):
    """A bad input file or folder: unreadable, malformed, inconsistent with a run."""


class UsageError(NanorecError):
    """A bad command-line value or config key, or a combination that cannot work."""
