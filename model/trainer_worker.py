"""One local Trainer worker: `python -m model.trainer_worker FN_ARGS_JSON`.

`model.trainer.run_fn`, asked for N workers on one machine (custom_config "workers",
`movielens-tfx run --trainer-workers N`), starts N of these with `model.distribute.
launch_local_workers`, each with its own TF_CONFIG; each rebuilds the Trainer's FnArgs from
the JSON and runs `run_fn`, which sees TF_CONFIG and trains with MultiWorkerMirroredStrategy,
exactly as a worker on Vertex AI or in a Kubeflow TFJob does.
"""
from __future__ import annotations

import sys
from typing import Sequence

from model.worker_args import fn_args_from_json


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    from model import distribute
    from model.trainer import run_fn

    if distribute.Cluster.from_env() is None:
        print("model.trainer_worker: TF_CONFIG names no multi-worker cluster", file=sys.stderr)
        return 2
    run_fn(fn_args_from_json(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
