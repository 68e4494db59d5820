"""The top floor: the commands people type (`movielens-tfx ...`, `make demo`).

Commands parse flags, call the pipeline, serving and index packages below, and print. Nothing
below imports from here (checked by the import-linter contract in pyproject.toml). Every
`movielens-tfx` subcommand is one `registry.Command` in `cli.COMMANDS`.
"""
