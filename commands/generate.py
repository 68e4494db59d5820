"""Write users.dat, movies.dat, ratings.dat in the ML-1M format, with planted clusters.

`movielens-tfx generate`: the flags of `data.synthetic_data` that the CLI offers, handed on
to its own command line (`python -m data.synthetic_data` has the same job and more flags).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", default="demo", choices=("tiny", "small", "demo", "ml-1m"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--n-ratings", type=int, help="override the size's rating count")


def run(args: argparse.Namespace) -> int:
    from data import synthetic_data

    argv = ["--out", str(args.out), "--size", args.size, "--seed", str(args.seed)]
    if args.n_ratings:
        argv += ["--n-ratings", str(args.n_ratings)]
    return synthetic_data.main(argv) or 0
