"""The `nanorec` command: dispatches to `main(argv) -> int` of nanorec/commands/NAME.py and owns
the one error path: a NanorecError is one line on stderr (`nanorec COMMAND: error: ...`), exit 2;
a bad option is argparse's usage message, exit 2; a closed stdout pipe (`... | head -1`) ends it
quietly, status 141, as SIGPIPE ends a Unix tool; anything else is a bug: one line naming the
exception, exit 1 (`NANOREC_DEBUG=1` prints the traceback instead).
"""
from __future__ import annotations

import importlib
import os
import sys

from . import __version__
from .errors import NanorecError, one_line

# command -> (module, one-line help)
COMMANDS = {
    "quickstart": ("nanorec.commands.quickstart", "synthetic demo: train, evaluate against popularity, write a submission"),
    "train": ("nanorec.commands.train", "train a GPT recommender on an interaction log"),
    "update": ("nanorec.commands.update", "update a trained run with new events (new users and items) into a new run folder"),
    "evaluate": ("nanorec.commands.evaluate", "full-ranking metrics of a trained run on the valid or test split"),
    "tune": ("nanorec.commands.tune", "hyper-parameter search on validation (Optuna), test scored once for the winner"),
    "recommend": ("nanorec.commands.recommend", "top-k lists per user, or a challenge submission"),
    "serve": ("nanorec.commands.serve", "HTTP API for top-k recommendations (needs the serve extra)"),
    "embed": ("nanorec.commands.embed", "build frozen item content tables (images, text, attributes)"),
    "synth": ("nanorec.commands.synth", "a challenge-shaped synthetic purchase log of any size (seconds for millions of rows)"),
    "leaderboard": ("nanorec.commands.leaderboard", "run baselines and GPT variants, write leaderboard.{md,json,png}"),
    "inspect": ("nanorec.commands.inspect", "a static HTML page of a run: users' histories beside their lists, metrics, curves"),
}


def command_parser(name: str, doc: str, more: str = ""):
    """A subcommand's parser from its module docstring: the first paragraph is the description,
    the rest (plus `more`) the epilog of --help, printed as written."""
    import argparse
    head, _, rest = doc.partition("\n\n")
    return argparse.ArgumentParser(prog=f"nanorec {name}", description=head,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, epilog=rest + more)


def usage() -> str:
    lines = ["usage: nanorec COMMAND [options]   (nanorec COMMAND --help for details)", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "  --version    print the version", "",
              "Bad input is one line on stderr and exit status 2; NANOREC_DEBUG=1 shows tracebacks."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("--version", "-V", "version"):
        print(f"nanorec {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"nanorec: error: unknown command {name!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except NanorecError as e:
        print(f"nanorec {name}: error: {one_line(e, 500)}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse: --help (0) or a bad option (2), its message already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print(f"nanorec {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `nanorec recommend ... | head -1`: the reader has what it wanted
        return broken_pipe()
    except Exception as e:  # a bug: say so in one line, keep the traceback one variable away
        if os.environ.get("NANOREC_DEBUG"):
            raise
        print(f"nanorec {name}: internal error: {type(e).__name__}: {one_line(e, 500)} "
              f"(a bug; NANOREC_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


def broken_pipe() -> int:
    """Stop quietly, as a Unix tool killed by SIGPIPE does (status 128 + 13): no message, and
    stdout pointed at /dev/null so that Python's own flush at exit finds no pipe to complain of."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    # `python -m nanorec.cli` runs this file as __main__; dispatch through the
    # importable module so its error classes are the ones the subcommands raise.
    from nanorec.cli import main as _main
    sys.exit(_main())
