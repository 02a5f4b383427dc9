"""One file a `nanorec` subcommand, each `main(argv) -> int`: the arguments, checked, over the
Python API and the modules it calls (cli.py dispatches and owns the one error path)."""
