"""`movielens-tfx rate`: predicted ratings from the model server over gRPC (`serving.client`).

A pass-through command (commands.registry): its flags are the client's `rate` subcommand's,
parsed there, so `movielens-tfx rate --help` is `python -m serving.client rate --help`.
"""
from __future__ import annotations

from typing import Sequence

from serving import client


def main(argv: Sequence[str]) -> int:
    return client.main(["rate", *argv])
