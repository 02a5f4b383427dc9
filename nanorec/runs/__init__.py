"""The run folder: its files and their checked reads and atomic writes, Run.open, update."""
