"""The Trainer's FnArgs as JSON: what `run_fn` hands each local worker process (model.trainer_worker).

Why its own module: run_fn (model.trainer) writes it and the worker reads it back, and the
worker imports run_fn, so the codec lives below both.
"""
from __future__ import annotations

import json
from typing import Any

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
