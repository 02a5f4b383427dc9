"""The `nanorec` command: one subcommand per module, each with its own --help.

Every subcommand lives in the module that does the work, as `main(argv) -> int`;
this file only dispatches, and turns the errors users can cause (bad files,
bad config keys) into one clear line on stderr and exit status 2.
"""
from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help)
COMMANDS = {
    "quickstart": ("nanorec.quickstart", "synthetic demo: train, evaluate against popularity, write a submission"),
    "train": ("nanorec.train", "train a GPT recommender on an interaction log"),
    "evaluate": ("nanorec.evaluate_cli", "full-ranking metrics of a trained run on the valid or test split"),
    "recommend": ("nanorec.recommend", "top-k lists per user, or a challenge submission"),
    "embed": ("nanorec.embed", "build frozen item content tables (images, text, attributes)"),
    "leaderboard": ("nanorec.leaderboard", "run baselines and GPT variants, write leaderboard.{md,json,png}"),
    "serve": ("nanorec.serve", "HTTP API for top-k recommendations"),
}


class UsageError(Exception):
    """A bad command-line value (e.g. an unknown config key). Exit status 2."""


def usage() -> str:
    lines = ["usage: nanorec COMMAND [options]   (nanorec COMMAND --help for details)", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .data import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"nanorec: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except (DataError, UsageError) as e:
        print(f"nanorec {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nanorec {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m nanorec.cli` runs this file as __main__; dispatch through the
    # importable module so its UsageError is the class the subcommands raise.
    from nanorec.cli import main as _main
    sys.exit(_main())
