"""Training across workers (model.distribute): TF_CONFIG read as TensorFlow reads it, local
workers launched and stopped together, and (slow tier) two local workers training the demo's
pipeline into a model that serves every signature and scores like the single-process one."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from common.errors import UserError
from model import distribute

ROOT = Path(__file__).resolve().parents[1]


def _tf_config(cluster: dict, kind: str, index: int) -> dict:
    return {distribute.TF_CONFIG: json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


def test_a_cluster_of_workers_is_read_from_tf_config_and_worker_0_is_the_chief():
    workers = {"worker": ["h0:1", "h1:2", "h2:3"]}
    first = distribute.Cluster.from_env(_tf_config(workers, "worker", 0))
    third = distribute.Cluster.from_env(_tf_config(workers, "worker", 2))
    assert first.size == 3 and first.is_chief and not third.is_chief and third.task_name == "worker-2"


def test_with_a_chief_task_only_the_chief_is_chief():
    cluster = {"chief": ["c:1"], "worker": ["w0:2", "w1:3"]}
    assert distribute.Cluster.from_env(_tf_config(cluster, "chief", 0)).is_chief
    worker0 = distribute.Cluster.from_env(_tf_config(cluster, "worker", 0))
    assert worker0.size == 3 and not worker0.is_chief


def test_no_tf_config_or_a_single_worker_is_one_process():
    assert distribute.Cluster.from_env({}) is None
    assert distribute.Cluster.from_env(_tf_config({"worker": ["h:1"]}, "worker", 0)) is None


@pytest.mark.parametrize("raw, message", [
    ("{not json", "not JSON"),
    (json.dumps({"task": {"type": "worker"}}), 'no "cluster"'),
    (json.dumps({"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}), "host:port"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}}), "not one of"),
    (json.dumps({"cluster": {"worker": ["a:1"], "evaluator": ["e:1"]}, "task": {"type": "evaluator", "index": 0}}),
     "chief and workers only"),
])
def test_a_malformed_tf_config_is_a_clear_error(raw, message):
    with pytest.raises(UserError, match=message):
        distribute.Cluster.from_env({distribute.TF_CONFIG: raw})


def test_local_tf_configs_put_each_worker_on_its_own_loopback_port():
    configs = distribute.local_tf_configs(3)
    workers = configs[0]["cluster"]["worker"]
    assert len(set(workers)) == 3 and all(w.startswith("127.0.0.1:") for w in workers)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)


def test_local_workers_each_get_their_tf_config_and_their_output_is_prefixed(tmp_path):
    script = "import json, os; print('task', json.loads(os.environ['TF_CONFIG'])['task']['index'])"
    sink = io.StringIO()
    seconds = distribute.launch_local_workers(2, [sys.executable, "-c", script], log_dir=str(tmp_path), sink=sink)
    assert len(seconds) == 2 and all(s >= 0 for s in seconds)
    assert "[worker 0] task 0" in sink.getvalue() and "[worker 1] task 1" in sink.getvalue()
    assert (tmp_path / "worker-1.log").read_text() == "task 1\n"


def test_when_one_worker_fails_the_others_are_stopped_and_it_is_named(tmp_path):
    # worker 1 fails at once; worker 0 would wait for it forever, as a collective would
    script = ("import json, os, sys, time\n"
              "i = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
              "print('worker', i, 'up', flush=True)\n"
              "sys.exit(3) if i == 1 else time.sleep(600)\n")
    with pytest.raises(distribute.WorkerFailure) as failure:
        distribute.launch_local_workers(2, [sys.executable, "-c", script], log_dir=str(tmp_path), sink=io.StringIO(),
                                        timeout=120)
    assert failure.value.worker == 1 and failure.value.returncode == 3
    assert "worker 1 up" in str(failure.value) and "worker-1.log" in str(failure.value)


def test_per_replica_logs_turn_scalars_into_one_element_vectors():
    import tensorflow as tf

    logs = distribute.per_replica_logs({"loss": tf.constant(0.5), "counts": tf.constant([1, 2]), "n": 3})
    assert logs["loss"].shape == (1,) and float(logs["loss"][0]) == 0.5
    assert logs["counts"].shape == (2,) and logs["n"] == 3


def test_trainer_workers_must_be_a_whole_number_of_at_least_one(capsys):
    from commands import run

    parser = run.argparse.ArgumentParser()
    run.add_arguments(parser)
    assert parser.parse_args(["--trainer-workers", "2"]).trainer_workers == 2
    for bad in ("0", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--trainer-workers", bad])
    assert "--trainer-workers" in capsys.readouterr().err


# --------------------------------------------------------------------------- slow: the pipeline

def _every_signature_answers(model_dir: str, data_dir: str) -> list[str]:
    """Calls every signature of the SavedModel with a one-row batch: the data's first rating as
    a tf.Example for `examples` inputs, plausible raw values for the others."""
    import tensorflow as tf

    from components.example_gen import record_to_example
    from data.movielens_files import load_movielens

    example = record_to_example(next(iter(load_movielens(data_dir).records()))).SerializeToString()
    model = tf.saved_model.load(model_dir)
    values = {tf.int64: 1, tf.int32: 1, tf.float32: 4.0, tf.string: b"Comedy"}
    answered = []
    for name, fn in model.signatures.items():
        inputs = {}
        for key, spec in fn.structured_input_signature[1].items():
            if key in ("examples", "inputs"):  # serialized tf.Examples (serving_tf_example, regress)
                inputs[key] = tf.constant([example])
                continue
            shape = [1 if d is None else d for d in spec.shape.as_list()]
            inputs[key] = tf.fill(shape, tf.constant(values[spec.dtype], spec.dtype))
        outputs = fn(**inputs)
        for value in outputs.values():
            if value.dtype.is_floating:
                assert np.all(np.isfinite(value.numpy())), name
        answered.append(name)
    return answered


@pytest.mark.slow
def test_two_local_workers_train_the_pipeline_to_the_single_process_rmse(tmp_path):
    from common import fileio
    from components.report import slice_metrics
    from data import synthetic_data
    from model.trainer import HISTORY_FILE
    from pipeline import configs
    from pipeline.run import run_pipeline
    from settings.paths import ArtifactPaths

    def history_of(result) -> dict:
        return json.loads(fileio.read_text(fileio.join(result.uri("Trainer", "model_run"), HISTORY_FILE)))

    def test_rmse(result) -> float:
        return dict(slice_metrics(result.uri("Evaluator", "evaluation")))["overall"]["root_mean_squared_error"]

    data = tmp_path / "data"
    synthetic_data.generate(data, **synthetic_data.size_kwargs("tiny"), seed=7)
    hparams = {"epochs": 4, "batch_size": 256, "embedding_dim": 32, "lstm_units": 32}
    results = {}
    for workers in (1, 2):
        config = configs.PipelineConfig(data_dir=str(data), paths=ArtifactPaths(tmp_path / f"w{workers}"),
                                        hparams=dict(hparams), rmse_threshold=1.5, trainer_workers=workers)
        results[workers] = run_pipeline(config)
    history = history_of(results[2])
    assert history["workers"]["count"] == 2 and history["workers"]["strategy"] == "MultiWorkerMirroredStrategy"
    assert len(history["workers"]["seconds_per_worker"]) == 2 and "workers" not in history_of(results[1])
    rmse = {w: test_rmse(r) for w, r in results.items()}
    assert abs(rmse[2] - rmse[1]) <= 0.01, rmse
    # the logged losses are the mean over the replicas, as in one process (not their sum)
    single = history_of(results[1])
    for key in ("loss", "val_loss"):
        assert abs(history[key][-1] / single[key][-1] - 1) < 0.2, (key, history[key], single[key])
    pushed = sorted((tmp_path / "w2" / "serving" / "movielens").iterdir())
    assert pushed, "the two-worker model was not pushed"
    answered = _every_signature_answers(str(pushed[-1]), str(data))
    assert {"serving_default", "rate_with_features", "user_embedding", "movie_embedding"} <= set(answered)
