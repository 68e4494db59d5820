"""One local Trainer worker: `python -m components.trainer_worker FN_ARGS_JSON`.

`components.trainer.run_fn`, asked for N workers on one machine (custom_config "workers",
`movielens-tfx run --trainer-workers N`), starts N of these with `components.distribute.
launch_local_workers`, each with its own TF_CONFIG; each rebuilds the Trainer's FnArgs from
the JSON and runs `run_fn`, which sees TF_CONFIG and trains with MultiWorkerMirroredStrategy,
exactly as a worker on Vertex AI or in a Kubeflow TFJob does.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Sequence

#: The FnArgs fields run_fn reads, passed to each worker as JSON (data_accessor, a set of
#: Python callables, is not one of them: run_fn reads the TFRecords itself).
FN_ARGS_FIELDS = ("working_dir", "train_files", "eval_files", "train_steps", "eval_steps", "schema_path",
                  "schema_file", "transform_graph_path", "transform_output", "serving_model_dir",
                  "eval_model_dir", "model_run_dir", "base_model", "custom_config")


def fn_args_json(fn_args: Any) -> str:
    """The JSON a worker rebuilds ``fn_args`` from."""
    return json.dumps({name: getattr(fn_args, name, None) for name in FN_ARGS_FIELDS}, sort_keys=True)


def fn_args_from_json(text: str):
    """The FnArgs that ``fn_args_json`` wrote."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    values = json.loads(text)
    unknown = set(values) - set(FN_ARGS_FIELDS)
    if unknown:
        raise ValueError(f"unknown FnArgs fields {sorted(unknown)}")
    return FnArgs(**values)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    from components import distribute
    from components.trainer import run_fn

    if distribute.Cluster.from_env() is None:
        print("components.trainer_worker: TF_CONFIG names no multi-worker cluster", file=sys.stderr)
        return 2
    run_fn(fn_args_from_json(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
