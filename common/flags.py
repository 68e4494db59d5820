"""An options dataclass from flags argparse parsed: one field per flag, named alike.

Why here: each job that can run without argparse (the model server's ServerOptions, the export
job's ExportOptions, the similarity service's ServiceOptions) keeps its flags beside a
dataclass whose fields they fill (``--model-base-path`` -> ``model_base_path``); the CLI then
only turns the parsed Namespace into that dataclass, the same way for all of them.
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TypeVar

Options = TypeVar("Options")


def options_from_flags(cls: type[Options], args: argparse.Namespace) -> Options:
    """``cls`` (a dataclass) from the flags of ``args`` that name one of its fields; a field
    without a flag keeps its default. Errors of the dataclass (its checks) propagate."""
    return cls(**{field.name: getattr(args, field.name) for field in fields(cls) if hasattr(args, field.name)})
