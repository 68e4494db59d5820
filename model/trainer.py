"""TFX Trainer module: `run_fn` trains the two-tower model and exports the SavedModel.

Reads the Transform output (transformed train/eval examples and vocabularies), trains with
MSE/Adam, per-epoch learning-rate decay and early stopping on eval RMSE (best weights kept),
logs to TensorBoard in the model-run artifact, keeps a checkpoint so that a re-run Trainer
resumes an interrupted fit, then fits the Gibbs towers on the same training examples and serves
them beside the towers, weighted on the eval split (HParams.gibbs_*, model.blended_towers), and
exports `model.signatures.ServingModule`.

Hyperparameters come from the Trainer's custom_config["hparams"] (see model.HParams). The
serving lookup tables come from ExampleGen's catalogue artifact (the Trainer's `catalogue`
input, whose folder components.trainer_component passes as custom_config["catalogue_uri"]),
which run_fn also copies into the SavedModel (assets.extra/catalogue/) for the index job.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging as absl_logging

from common import memory
from common.allocator import no_numpy_hugepages
from common.errors import UserError
from common.phase_clock import PhaseClock
from data import features as f
from data.catalogue import copy_catalogue, model_catalogue_dir, read_catalogue
from model.blended_towers import GibbsRows, blend, skipped
from model.ensemble_apart import assemble, check_members, member_hparams, members_history
from model.model import MODEL_INPUTS, TARGET_IN_HISTORY, HParams, RatingHistory, Vocab, build_model, fit_retrieval
from model.signatures import ServingModule, export
from model.trainer_config import CATALOGUE_URI_CONFIG, CPUS_PER_WORKER_CONFIG, WORKERS_CONFIG
from model.two_stage import choose_rerank_weight, training_movies, write_two_stage

HISTORY_FILE = "history.json"


def vocab_from_transform(tf_transform_output: tft.TFTransformOutput) -> Vocab:
    """Input cardinalities, OOV buckets included, from the Transform's vocabularies."""
    size = tf_transform_output.vocabulary_size_by_name
    return Vocab(users=size(f.USER_ID_VOCAB) + f.OOV_BUCKETS,
                 movies=size(f.MOVIE_ID_VOCAB) + f.OOV_BUCKETS,
                 occupations=size(f.OCCUPATION_VOCAB) + f.OOV_BUCKETS,
                 title_words=size(f.TITLE_VOCAB) + f.OOV_BUCKETS,
                 genres=size(f.GENRE_VOCAB) + f.OOV_BUCKETS)


#: In-memory training holds each example about this many times: the NumPy columns, Keras's
#: tensor copy of them, the shuffled batches in flight, the history tables and the fit's
#: working memory. Measured: 16.0M examples of 244 bytes peaked at 18.2 GB of RSS, 4.7 times
#: their bytes (the in-memory 25M run, benchmarks/results/pipeline_synthetic-25m.json as of
#: commit e3aa016; with this value that size streams).
IN_MEMORY_COPIES = 5
#: Streamed training shuffles within a window of this many examples (tf.data's shuffle buffer).
SHUFFLE_BUFFER = 1 << 19
_READ_BATCH = 65536


@dataclass
class StreamedSplit:
    """A split whose model inputs do not fit the Trainer's memory budget: tf.data reads its
    TFRecords again every epoch. Its labels and ids (for the rating history, the retrieval
    fit and the rerank weight) are still held, 20 bytes per example."""

    files: list[str]
    spec: dict
    labels: np.ndarray
    ids: dict[str, np.ndarray]
    reason: str

    def dataset(self, batch_size: int, seed: int, with_target: bool) -> tf.data.Dataset:
        """(inputs, label) batches, shuffled within SHUFFLE_BUFFER examples; with_target adds
        TARGET_IN_HISTORY (the label), as the in-memory path passes it."""
        keep = {k: self.spec[k] for k in (*MODEL_INPUTS, f.LABEL_XF)}

        def split(batch):
            label = batch.pop(f.LABEL_XF)
            inputs = {k: batch[k] for k in MODEL_INPUTS}
            if with_target:
                inputs[TARGET_IN_HISTORY] = label
            return inputs, label

        return (tf.data.TFRecordDataset(self.files, compression_type="GZIP",
                                        num_parallel_reads=tf.data.AUTOTUNE)
                .shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
                .batch(batch_size)
                .apply(tf.data.experimental.assert_cardinality(-(-len(self.labels) // batch_size)))
                .map(lambda x: split(tf.io.parse_example(x, keep)), num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))


def example_bytes(spec: dict) -> int:
    """Bytes of one example's model inputs and label as NumPy columns."""
    return sum(int(np.prod(spec[k].shape or [1])) * tf.as_dtype(spec[k].dtype).size
               for k in (*MODEL_INPUTS, f.LABEL_XF))


def _files(file_pattern: str | list[str]) -> list[str]:
    patterns = file_pattern if isinstance(file_pattern, list) else [file_pattern]
    # tf.io.gfile, not glob: on Vertex AI / Kubeflow the Transform output is on gs://.
    files = sorted(p for pattern in patterns for p in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {patterns}")
    return files


def load_transformed(file_pattern: str | list[str], tf_transform_output: tft.TFTransformOutput,
                     memory_budget: float = float("inf")
                     ) -> tuple[dict[str, np.ndarray], np.ndarray] | StreamedSplit:
    """A split of transformed examples as in-memory NumPy columns (model inputs, labels), or,
    once IN_MEMORY_COPIES times the columns read so far pass ``memory_budget`` bytes, as a
    StreamedSplit (the same single pass goes on keeping only ids and labels).

    MovieLens up to ML-1M fits in memory many times over; holding it as arrays makes every
    epoch a pass over RAM instead of a re-parse of gzipped TFRecords.

    The arrays (and a StreamedSplit's ids and labels) come in ``canonical_order``, not the
    files' order, so that a fit does not depend on how Transform's workers wrote them; a
    streamed split's batches still come in the files' order through the shuffle buffer.
    """
    files = _files(file_pattern)
    spec = tf_transform_output.transformed_feature_spec()
    keep = {k: spec[k] for k in (*MODEL_INPUTS, f.LABEL_XF)}
    per_example = IN_MEMORY_COPIES * example_bytes(spec)
    dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP")
               .batch(_READ_BATCH).map(lambda x: tf.io.parse_example(x, keep)))
    columns: dict[str, list[np.ndarray]] = {k: [] for k in keep}
    held, streamed = 0, None
    id_keys = (f.USER_ID_XF, f.MOVIE_ID_XF, f.LABEL_XF)
    for batch in dataset.as_numpy_iterator():
        held += len(batch[f.LABEL_XF])
        if streamed is None and held * per_example > memory_budget:
            streamed = (f"{held:,}+ examples x {per_example} bytes pass the {memory_budget / 1e9:.1f} GB "
                        f"training-data budget (HParams.train_memory_gb)")
            columns = {k: v for k, v in columns.items() if k in id_keys}
        for key in columns:
            columns[key].append(batch[key])
    arrays = {}
    for key in list(columns):  # one column's batches at a time: the peak is one column, not a copy of all
        arrays[key] = np.concatenate(columns.pop(key))
    labels = arrays.pop(f.LABEL_XF).astype(np.float32)
    order = canonical_order(arrays, labels)
    labels = labels[order]
    for key in list(arrays):  # one column at a time, as above
        arrays[key] = arrays[key][order]
    if streamed is not None:
        return StreamedSplit(files, spec, labels, arrays, streamed)
    return arrays, labels


def canonical_order(columns: dict[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """The permutation that sorts a split's examples by user, movie, label and then every other
    one-value column: one order whatever order the files hold them in.

    Why: Transform's Beam workers write the transformed examples in an order that changes from
    run to run (two runs of the demo on the same data wrote the same training examples in
    different orders), and Keras's seeded shuffle permutes positions, not examples, so the same
    data and seed gave a different model each time. Examples equal on every sort key differ at
    most in their movie's or user's list columns (genres, title words), which the ids fix.
    """
    keys = [columns[k] for k in sorted(columns) if columns[k].ndim == 1 and k not in (f.USER_ID_XF, f.MOVIE_ID_XF)]
    return np.lexsort((*keys, labels, columns[f.MOVIE_ID_XF], columns[f.USER_ID_XF]))


def split_ids(split: tuple[dict, np.ndarray] | StreamedSplit) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(the user and movie index columns, the labels) of an in-memory or streamed split."""
    if isinstance(split, StreamedSplit):
        return split.ids, split.labels
    return {k: split[0][k] for k in (f.USER_ID_XF, f.MOVIE_ID_XF)}, split[1]


def streamed_first_rows(split: StreamedSplit, keys: tuple[str, ...], id_key: str
                        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the distinct ``id_key`` values, the columns ``keys`` of each one's first example) of a
    streamed split, sorted by id: one more pass over its files."""
    keep = {k: split.spec[k] for k in keys}
    dataset = (tf.data.TFRecordDataset(split.files, compression_type="GZIP")
               .batch(_READ_BATCH).map(lambda x: tf.io.parse_example(x, keep)))
    found: dict[str, list[np.ndarray]] = {k: [] for k in keep}
    known = np.zeros(0, np.int64)
    for batch in dataset.as_numpy_iterator():
        ids, first = np.unique(batch[id_key], return_index=True)
        new = ~np.isin(ids, known)
        known = np.union1d(known, ids[new])
        for key in found:
            found[key].append(batch[key][first[new]])
    rows = {k: np.concatenate(v) for k, v in found.items()}
    order = np.argsort(rows[id_key])
    return rows[id_key][order], {k: v[order] for k, v in rows.items()}


def streamed_movies(split: StreamedSplit) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """model.two_stage.training_movies of a streamed split: each movie's first example."""
    from model.model import MOVIE_INPUTS

    return streamed_first_rows(split, MOVIE_INPUTS, f.MOVIE_ID_XF)


def gibbs_rows(train: tuple[dict, np.ndarray] | StreamedSplit,
               movie_rows: tuple[np.ndarray, dict[str, np.ndarray]]) -> GibbsRows:
    """What the Gibbs towers fit on (model.blended_towers.GibbsRows): the split's ratings, its
    examples' (or a streamed split's first rows per user) user features, and ``movie_rows``
    (training_movies or streamed_movies)."""
    from model.model import USER_INPUTS

    ids, labels = split_ids(train)
    users = (streamed_first_rows(train, USER_INPUTS, f.USER_ID_XF) if isinstance(train, StreamedSplit)
             else (train[0][f.USER_ID_XF], train[0]))
    return GibbsRows(ids[f.USER_ID_XF], ids[f.MOVIE_ID_XF], labels, users, movie_rows)


class ThroughputLogger(keras.callbacks.Callback):
    """Records training examples/second per epoch (reported by the benchmark).

    The clock runs over the epoch's training steps only: it stops when validation begins
    (Keras calls on_test_begin from fit), so the rate is not diluted by the eval pass, which
    `seconds_per_epoch` (training and validation) still shows.
    """

    def __init__(self, n_examples: int):
        super().__init__()
        self.n_examples, self.rates, self.epoch_seconds = n_examples, [], []
        self._start, self._train_seconds = 0.0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_seconds = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        whole = time.perf_counter() - self._start
        train = self._train_seconds if self._train_seconds is not None else whole
        self.rates.append(self.n_examples / max(train, 1e-9))
        self.epoch_seconds.append(whole)


def ema_momentum(hp: HParams, n_train: int) -> float:
    """HParams.ema_momentum, lowered so that the average spans at most hp.ema_epochs epochs."""
    steps = max(1, -(-n_train // hp.batch_size))
    return min(hp.ema_momentum, max(0.0, 1.0 - 1.0 / (hp.ema_epochs * steps)))


def fit(model, hp: HParams, train: tuple[dict, np.ndarray] | StreamedSplit,
        evaluation: tuple[dict, np.ndarray] | None, *, log_dir: str | None = None, checkpoint_dir: str | None = None,
        verbose: int = 2) -> dict[str, Any]:
    """Trains in place on in-memory arrays or a StreamedSplit; returns the history with
    per-epoch metrics and examples/s.

    ``evaluation`` None: a final fit for exactly hp.epochs epochs (an epoch count chosen on
    held-out data before), without validation or early stopping; the model keeps the last
    epoch's weights (their moving average with EMA on, as Keras's fit finalises them)."""
    n_train = len(split_ids(train)[1])
    throughput = ThroughputLogger(n_train)
    # With EMA on, validation and early stopping see the averaged weights (SwapEMAWeights must
    # precede EarlyStopping so that the best weights it keeps are the averaged ones).
    ema = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if hp.ema_momentum > 0 else []
    if ema:  # set before fit traces the train step, which reads the momentum as a constant
        model.optimizer.ema_momentum = ema_momentum(hp, n_train)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: hp.learning_rate * hp.decay_rate ** epoch),
        *ema,
        *([keras.callbacks.EarlyStopping(monitor="val_rmse", mode="min", patience=hp.patience,
                                         restore_best_weights=True)] if evaluation is not None else []),
        throughput,
    ]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    if checkpoint_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(checkpoint_dir, delete_checkpoint=True))
    reads_history = getattr(model, "reads_history", False)  # the history was built from exactly these examples
    if isinstance(train, StreamedSplit):
        history = model.fit(train.dataset(hp.batch_size, hp.seed, with_target=reads_history), epochs=hp.epochs,
                            validation_data=evaluation, validation_batch_size=hp.batch_size, shuffle=False,
                            callbacks=callbacks, verbose=verbose)  # the dataset shuffles itself
    else:
        train_inputs = {**train[0], TARGET_IN_HISTORY: train[1]} if reads_history else train[0]
        history = model.fit(train_inputs, train[1], batch_size=hp.batch_size, epochs=hp.epochs,
                            validation_data=evaluation, shuffle=True, callbacks=callbacks, verbose=verbose)
    result = {k: [float(x) for x in v] for k, v in history.history.items()}
    result["examples_per_second"] = throughput.rates
    result["seconds_per_epoch"] = throughput.epoch_seconds
    result["best_epoch"] = int(np.argmin(result["val_rmse"])) if result.get("val_rmse") else None
    return result


def _checkpoint_dir(base: str | None, transform_uri: str, hp: HParams, code: str | None = None) -> str | None:
    """A checkpoint folder keyed by the inputs and the code's fingerprint (custom_config "code"),
    so a re-run resumes only the same training."""
    if not base:
        return None
    key = hashlib.sha256(json.dumps([transform_uri, hp.to_dict(), code], sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(base, key)


def _catalogue_uri(config: dict[str, Any]) -> str:
    uri = config.get(CATALOGUE_URI_CONFIG)
    if not uri:
        raise ValueError("the Trainer has no catalogue input: wire ExampleGen's `catalogue` output into "
                         "components.trainer_component.MovieLensTrainer(catalogue=...)")
    return uri


def _write_history(model_run_dir: str, history: dict[str, Any]) -> None:
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, HISTORY_FILE), "w") as handle:
        json.dump(history, handle, indent=1)


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (GenericExecutor).

    Trains in this process, or across workers (model.distribute):
    * TF_CONFIG names a cluster of several workers (Vertex AI, a Kubeflow TFJob, or a worker
      started by the next case): MultiWorkerMirroredStrategy, every worker running this
      function, only the chief's model kept;
    * custom_config["workers"] = N > 1 and no TF_CONFIG: N local worker processes on loopback
      ports (model.trainer_worker), and this process waits for them.

    history.json (in the model-run artifact) records the seconds of each phase under
    "seconds": load, retrieval (closed-form fit), fit, rerank (choose_rerank_weight), export
    (the SavedModel and its catalogue copy; added once the export is done), and gibbs (the
    Gibbs towers' fit, HParams.gibbs_samples > 0)."""
    from model import distribute

    no_numpy_hugepages()  # per-rating arrays: keep their page faults linear (common.allocator)
    config = fn_args.custom_config or {}
    cluster = distribute.Cluster.from_env()
    workers = int(config.get(WORKERS_CONFIG) or 1)
    if cluster is None and workers > 1:
        _run_local_workers(fn_args, workers, config.get(CPUS_PER_WORKER_CONFIG))
        return
    # made before any TensorFlow op: the strategy configures the eager context's collectives
    strategy = distribute.strategy(cluster) if cluster is not None else None
    if cluster is not None and not cluster.is_chief:  # trains in lockstep; its outputs are dropped
        with tempfile.TemporaryDirectory(prefix=f"movielens-{cluster.task_name}-") as scratch:
            _train(fn_args, config, strategy, cluster, out_dirs=(os.path.join(scratch, "model_run"),
                                                                  os.path.join(scratch, "serving_model")))
        return
    _train(fn_args, config, strategy, cluster)


def _run_local_workers(fn_args, workers: int, cpus_per_worker: int | None) -> None:
    """Runs run_fn in ``workers`` local processes (model.trainer_worker) and waits; the
    chief (worker 0) writes the model and history.json, to which the workers' seconds are added."""
    from model import distribute
    from model.worker_args import fn_args_json

    # the workers' logs beside history.json; a gs:// model run keeps them on this machine
    log_dir = (os.path.join(fn_args.model_run_dir, "workers") if "://" not in fn_args.model_run_dir
               else tempfile.mkdtemp(prefix="movielens-workers-"))
    absl_logging.info("training with %d local workers (MultiWorkerMirroredStrategy; logs in %s)", workers, log_dir)
    seconds = distribute.launch_local_workers(
        workers, [sys.executable, "-m", "model.trainer_worker", fn_args_json(fn_args)],
        log_dir=log_dir, cpus_per_worker=int(cpus_per_worker) if cpus_per_worker else None)
    path = os.path.join(fn_args.model_run_dir, HISTORY_FILE)
    with tf.io.gfile.GFile(path) as handle:
        history = json.load(handle)
    history["workers"] = {**history.get("workers", {}), "seconds_per_worker": seconds, "launched": "local",
                          "cpus_per_worker": int(cpus_per_worker) if cpus_per_worker else None}
    _write_history(fn_args.model_run_dir, history)


def _train(fn_args, config: dict[str, Any], strategy, cluster, out_dirs: tuple[str, str] | None = None) -> None:
    """run_fn's training, in this process or as one worker of ``cluster`` under ``strategy``;
    ``out_dirs`` (model run, serving model) replaces fn_args' folders on a non-chief worker."""
    from model import distribute

    hp = HParams.from_dict(config.get("hparams"))
    model_run_dir, serving_model_dir = out_dirs or (fn_args.model_run_dir, fn_args.serving_model_dir)
    phases = PhaseClock()

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    vocab = vocab_from_transform(tf_transform_output)
    train = load_transformed(fn_args.train_files, tf_transform_output, memory.budget_bytes(hp.train_memory_gb))
    evaluation = load_transformed(fn_args.eval_files, tf_transform_output)  # a tenth of the data: held
    train_ids, train_labels = split_ids(train)
    streamed = train.reason if isinstance(train, StreamedSplit) else None
    if streamed and strategy is not None:
        raise UserError(f"training across workers needs the training data in memory, but it is streamed "
                        f"({streamed}): raise HParams.train_memory_gb or train in one process")
    absl_logging.info("training data: %s", f"streamed from TFRecords: {streamed}" if streamed else "in memory")
    ratings = RatingHistory.from_ratings(train_ids[f.USER_ID_XF], train_ids[f.MOVIE_ID_XF], train_labels, vocab)
    scale = f.rating_scale(train_labels)  # what the served ratings are clipped to
    catalogue_rows = streamed_movies(train) if streamed else training_movies(train[0])
    phases.lap("load")
    scope = strategy.scope if strategy is not None else contextlib.nullcontext
    # HParams.ensemble_apart: K single models fitted one after another, then assembled
    fits = [member_hparams(hp, k) for k in range(hp.ensemble_size)] if hp.ensemble_apart else [hp]
    if hp.ensemble_apart:
        check_members(hp)
    models, histories, retrieval = [], [], None
    for k, fit_hp in enumerate(fits):
        with scope():  # variables made here are mirrored on every replica of every worker
            model = build_model(vocab, fit_hp, global_mean=float(train_labels.mean()), history=ratings)
        if k == 0:
            retrieval = fit_retrieval(model, train_ids[f.USER_ID_XF], train_ids[f.MOVIE_ID_XF], train_labels,
                                      evaluation[0][f.USER_ID_XF], evaluation[0][f.MOVIE_ID_XF], evaluation[1])
            phases.lap("retrieval")
        checkpoint_dir = _checkpoint_dir(config.get("checkpoint_dir"), fn_args.transform_output, fit_hp,
                                         config.get("code"))
        if checkpoint_dir and cluster is not None:  # one backup per worker: they must not overwrite each other's
            checkpoint_dir = os.path.join(checkpoint_dir, cluster.task_name)
        log_dir = os.path.join(model_run_dir, "tensorboard", *([f"member_{k}"] if hp.ensemble_apart else []))
        with distribute.fit_scope(model, strategy):
            histories.append(fit(model, fit_hp, train, evaluation, log_dir=log_dir, checkpoint_dir=checkpoint_dir))
        models.append(model)
    history = histories[0]
    if hp.ensemble_apart:
        with scope():
            model = assemble(models, hp, ratings)
        history = {**members_history(histories),
                   "val_rmse": [float(model.evaluate(*evaluation, batch_size=hp.batch_size, verbose=0,
                                                     return_dict=True)["rmse"])]}
    phases.lap("fit")
    gibbs = None
    left_out = skipped(hp, len(train_labels))
    if left_out is None and (cluster is None or cluster.is_chief):  # a non-chief's model is dropped
        model, gibbs = blend(model, hp, gibbs_rows(train, catalogue_rows), evaluation, scale)
        absl_logging.info("Gibbs towers: weight %.3f, eval RMSE %s", gibbs["weight"], gibbs.get("eval_rmse"))
        phases.lap("gibbs")
    elif left_out is not None and hp.gibbs_samples > 0:
        absl_logging.warning("no Gibbs towers: %s", left_out)
        gibbs = {"skipped": left_out}
    two_stage = choose_rerank_weight(model, (train_ids[f.USER_ID_XF], train_ids[f.MOVIE_ID_XF]), catalogue_rows,
                                     evaluation[0], evaluation[1], rating_scale=scale)
    phases.lap("rerank")
    history["two_stage"] = two_stage
    history["hparams"] = hp.to_dict()
    history["retrieval"] = retrieval
    history["gibbs"] = gibbs
    history["train_examples"], history["eval_examples"] = len(train_labels), len(evaluation[1])
    history["training_data"] = {"streamed": streamed is not None, "reason": streamed or "fits the budget"}
    history["rating_scale"] = list(scale)
    if cluster is not None:
        history["workers"] = {"count": cluster.size, "strategy": "MultiWorkerMirroredStrategy",
                              "replicas_in_sync": int(strategy.num_replicas_in_sync), "written_by": cluster.task_name}
    history["seconds"] = phases.seconds  # the same dict: the export lap lands in it too
    _write_history(model_run_dir, history)

    catalogue_uri = _catalogue_uri(config)
    catalogue = read_catalogue(catalogue_uri)
    export(ServingModule(model, tf_transform_output, catalogue.users, catalogue.movies, rating_scale=scale),
           serving_model_dir,
           user_ids=sorted(catalogue.users)[:100], movie_ids=sorted(catalogue.movies)[:100])
    # The index job, explain and the demo read the users/movies of *this* model from here.
    copy_catalogue(catalogue_uri, model_catalogue_dir(serving_model_dir))
    if two_stage is not None:  # the similarity service's default re-ranking weight for this model
        write_two_stage(serving_model_dir, {**two_stage, "retrieval": history["retrieval"]})
    phases.lap("export")
    _write_history(model_run_dir, history)  # now with the export's seconds
