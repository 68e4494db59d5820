"""The peer of our ExampleGen: TFX's stock CsvExampleGen on the same ratings CSV.

    python -m benchmarks.peer_example_gen --csv ../shared/data/ml-1m/ratings-no-timestamps.csv

Runs `tfx.components.CsvExampleGen` alone (LocalDagRunner, the DirectRunner with the Beam
args given) on a temporary folder holding just the ratings CSV, with the same hash split as
MovieLensExampleGen (components.example_gen.output_config()), and returns its wall clock.
CsvExampleGen needs a header line; a CSV without one gets `UserID,MovieID,Rating[,Timestamp]`
prepended in the temporary copy (a file with a header is symlinked, not copied).
The peer writes ratings only, without the user/movie join: it is the floor of what a
CSV -> tf.Example -> split -> gzipped TFRecords job costs on this machine, so
`our ExampleGen / peer` is the ratio to watch (measured in one run, as the host's speed varies).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Sequence

from components.example_gen import output_config
from pipeline import configs

HEADERS = {3: b"UserID,MovieID,Rating", 4: b"UserID,MovieID,Rating,Timestamp"}


def _has_header(first_line: bytes) -> bool:
    try:
        int(first_line.split(b",")[0])
    except ValueError:
        return True
    return False


def stage_csv(csv_path: str, folder: str) -> str:
    """Puts the ratings CSV into ``folder`` (alone) with a header line; returns its path."""
    with open(csv_path, "rb") as handle:
        first = handle.readline().rstrip(b"\r\n")
    target = os.path.join(folder, "ratings.csv")
    if _has_header(first):
        os.symlink(os.path.abspath(csv_path), target)
        return target
    n_fields = len(first.split(b","))
    if n_fields not in HEADERS:
        raise ValueError(f"{csv_path}: expected 3 or 4 comma-separated fields, found {n_fields}")
    with open(target, "wb") as out, open(csv_path, "rb") as src:
        out.write(HEADERS[n_fields] + b"\n")
        shutil.copyfileobj(src, out)
    return target


def run_csv_example_gen(csv_path: str, work_dir: str, beam_args: list[str]) -> float:
    """Seconds TFX's CsvExampleGen takes on ``csv_path`` (staged under ``work_dir``), the
    pipeline's setup excluded: the LocalDagRunner's run of the one component."""
    from tfx import v1 as tfx

    input_dir = os.path.join(work_dir, "peer-input")
    os.makedirs(input_dir, exist_ok=True)
    stage_csv(csv_path, input_dir)
    example_gen = tfx.components.CsvExampleGen(input_base=input_dir, output_config=output_config())
    root = os.path.join(work_dir, "peer-pipeline")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="peer-csv-example-gen", pipeline_root=root, components=[example_gen],
        enable_cache=False, beam_pipeline_args=list(beam_args),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(work_dir, "peer-metadata.sqlite")))
    start = time.perf_counter()
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_example_gen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", required=True, help="a user,movie,rating[,timestamp] CSV")
    parser.add_argument("--beam-arg", action="append", default=None, metavar="ARG",
                        help=f"a Beam option (repeatable; default: {' '.join(configs.DEFAULT_BEAM_ARGS)})")
    args = parser.parse_args(argv)
    beam_args = args.beam_arg if args.beam_arg is not None else list(configs.DEFAULT_BEAM_ARGS)
    with tempfile.TemporaryDirectory(prefix="peer-example-gen-") as tmp:
        seconds = run_csv_example_gen(args.csv, tmp, beam_args)
    print(f"CsvExampleGen on {args.csv}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
