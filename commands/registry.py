"""How a `movielens-tfx` subcommand is registered: one `Command` per subcommand, one list in cli.py.

Why one shape: the CLI used to dispatch three ways (functions in cli.py, importlib strings for
modules, a special-case dict for commands that take another program's flags). Now every
subcommand is a `Command` naming the module that does its job, and that module offers

* ``add_arguments(parser)`` and ``run(args) -> int`` (exit status): the command's flags are
  added to its `movielens-tfx <name>` sub-parser, and ``run`` gets the parsed Namespace; or
* with ``pass_through=True``, ``main(argv) -> int``: the command's own program parses
  everything after ``<name>`` (``serve`` takes TF-Serving's flags, ``rate`` the client's),
  so it gets no sub-parser here and its ``--help`` is that program's.

Why a module name rather than the functions: the module is imported only when the command's
parser is built or the command runs, so ``movielens-tfx serve`` does not import the index or
the pipeline, and ``movielens-tfx --help`` imports what it did before (the modules whose
parsers it lists), no more.
"""
from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Sequence


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, its line in ``movielens-tfx --help`` and the module doing it."""

    name: str
    summary: str
    #: offers add_arguments(parser) and run(args) -> int; main(argv) -> int when pass_through
    module: str
    #: everything after the name goes to module.main(argv) unparsed (the module's own flags)
    pass_through: bool = False
    #: the sub-parser's description; None: the first paragraph of the module's docstring
    description: str | None = None

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def add_parser(self, subparsers) -> argparse.ArgumentParser:
        """``movielens-tfx <name>``'s parser, with the module's flags; parsing it sets
        ``handler`` to this Command's `run`."""
        module = self.load()
        description = self.description or (module.__doc__ or self.summary).strip().split("\n\n")[0]
        parser = subparsers.add_parser(self.name, help=self.summary, description=description)
        module.add_arguments(parser)
        parser.set_defaults(handler=self.run)
        return parser

    def run(self, args: argparse.Namespace) -> int:
        return self.load().run(args)

    def main(self, argv: Sequence[str]) -> int:
        """A pass-through command: the arguments after its name, handed over whole."""
        return self.load().main(list(argv))
