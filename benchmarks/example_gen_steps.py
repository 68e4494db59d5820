"""Where ExampleGen's time goes on one MovieLens folder: its executor's steps, timed one by one.

    python -m benchmarks.example_gen_steps DATA_FOLDER [DATA_FOLDER ...]

For each folder (the growth run's sizes are made by `python -m data.synthetic_data
--size 25m --seed 42 --out FOLDER`), in one process: parse the files, encode and write the
three splits with Beam (the pipeline's DirectRunner settings), read the written splits back
and build the catalogue from them, as the executor does. It prints
seconds and seconds per million ratings for each step, so a step whose cost grows faster than
the ratings shows between two sizes. A profile for finding such a step, not a result: the
committed growth figures come from `python -m benchmarks.pipeline_bench --growth`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Sequence


def steps(folder: str) -> dict[str, float]:
    """Seconds of each ExampleGen step on ``folder``."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from common.allocator import no_numpy_hugepages
    from common.phase_clock import PhaseClock
    from components import example_gen
    from data import catalogue
    from data.movielens_files import load_movielens
    from pipeline.configs import DEFAULT_BEAM_ARGS

    no_numpy_hugepages()  # as the executor runs
    phases = PhaseClock()
    data = load_movielens(folder)
    phases.lap("parse")
    with tempfile.TemporaryDirectory(prefix="example-gen-steps-") as out:
        split_config = example_gen.output_config().split_config
        uris = [os.path.join(out, f"Split-{split.name}") for split in split_config.splits]
        with beam.Pipeline(options=PipelineOptions(list(DEFAULT_BEAM_ARGS))) as pipeline:
            example_gen.write_splits(pipeline, data, uris, split_config, os.path.join(out, "encoded"))
        phases.lap("encode and write splits")
        pairs = {split.name: catalogue.read_split_ratings(out, split.name) for split in split_config.splits}
        phases.lap("read splits back")
        catalogue.build_catalogue(data.users, data.movies, pairs, source=folder)
        phases.lap("build catalogue")
    return {**phases.seconds, "ratings": len(data.ratings)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.example_gen_steps",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", metavar="DATA_FOLDER", help="MovieLens folders, smallest first")
    args = parser.parse_args(argv)
    for folder in args.folders:
        if not os.path.isdir(folder):
            parser.error(f"{folder} is not a folder")
    for folder in args.folders:
        result = steps(folder)
        millions = result.pop("ratings") / 1e6
        print(f"{folder} ({millions:.2f}M ratings)")
        for name, value in result.items():
            print(f"  {name:<26} {value:8.1f} s  {value / millions:6.2f} s per million ratings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
