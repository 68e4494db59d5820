"""The pipeline's two-tower model, fitted outside TFX on an arbitrary random split.

The accuracy and ranking benchmarks compare models on identical random splits, which TFX's
hash-split ExampleGen cannot produce, so this module runs the same pieces in-process: the
Transform's `preprocessing_fn` (analysed with tf.Transform on the train split), the same
Keras model (`model.model`) and the same `fit` loop as the Trainer's `run_fn`.

Vocabularies depend only on which values occur in the train split (frequency only orders
them), so the analysis runs over one row per distinct train user and movie, which yields the
same vocabularies up to order in seconds rather than minutes; the analysed transform is then
applied per user and per movie and gathered per rating.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from common.metrics import rmse
from data import features as f
from data.movielens_files import MovieLensData, raw_values
from index.visitors import VISITOR_USER_ID, HistoryVectors
from model import preprocessing
from model.blended_towers import blend, skipped
from model.ensemble_apart import assemble, check_members, member_hparams, members_history
from model.model import MODEL_INPUTS, HParams, RatingHistory, build_model, fit_retrieval
from model.trainer import fit, gibbs_rows, vocab_from_transform
from model.two_stage import training_movies

RAW_SPEC = preprocessing.RAW_INPUT_SPEC
USER_XF = f.USER_INPUTS
MOVIE_XF = f.MOVIE_INPUTS


def _instance_value(row: f.RawFeature, value) -> list:
    """A raw value as tf.Transform's instance dicts hold it: a list, strings as UTF-8 bytes."""
    values = list(value) if row.is_list else [value]
    return [v.encode("utf-8") for v in values] if row.dtype == "string" else values


def _rows(data: MovieLensData, user_ids: np.ndarray, movie_ids: np.ndarray) -> list[dict]:
    """Raw instance dicts pairing the i-th user with the i-th movie (cycling the shorter)."""
    n = max(len(user_ids), len(movie_ids))
    rows = []
    for i in range(n):
        user = data.users[int(user_ids[i % len(user_ids)])]
        movie = data.movies[int(movie_ids[i % len(movie_ids)])]
        values = {**raw_values(user), **raw_values(movie), f.LABEL_KEY: 3.0}
        rows.append({row.name: _instance_value(row, values.get(row.name, row.default)) for row in f.RAW_FEATURES})
    return rows


def _visitor_rows(data: MovieLensData) -> list[dict]:
    """One raw instance of a visitor: user id VISITOR_USER_ID (no vocabulary holds it) and every
    other user feature its default, as the served user_embedding_with_history signature builds
    it for an unknown id; the movie side is the first movie's (only the user side is kept)."""
    row = _rows(data, np.array([min(data.users)]), np.array([min(data.movies)]))[0]
    for raw in f.RAW_FEATURES:
        if raw.tower == "user":
            row[raw.name] = _instance_value(raw, VISITOR_USER_ID if raw.name == f.USER_ID else raw.default)
    return [row]


def analyse(data: MovieLensData, train_idx: np.ndarray, workdir: str) -> tft.TFTransformOutput:
    """Runs tf.Transform's analysis of preprocessing_fn over the train split's users/movies."""
    users = np.unique(data.ratings.user_id[train_idx])
    movies = np.unique(data.ratings.movie_id[train_idx])
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(dir=workdir), force_tf_compat_v1=False):
        transform_fn = (_rows(data, users, movies), metadata) | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(workdir)
    return tft.TFTransformOutput(workdir)


def _transform_table(output: tft.TFTransformOutput, rows: list[dict], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    lists = set(f.LIST_FEATURES)
    raw = {k: (tf.ragged.constant([r[k] for r in rows], dtype=spec.dtype, ragged_rank=1, inner_shape=None).to_sparse()
               if k in lists else tf.constant([r[k][0] for r in rows], dtype=spec.dtype)[:, None])
           for k, spec in RAW_SPEC.items()}
    out = output.transform_raw_features(raw)
    return {k: out[k].numpy() for k in keys}


@dataclass
class TwoTowerResult:
    predictions: np.ndarray
    seconds: float
    history: dict
    model: object
    user_index: dict[int, int]
    movie_index: dict[int, int]
    user_table: dict[str, np.ndarray]
    movie_table: dict[str, np.ndarray]
    inputs: object = None  # callable: rating row indices -> model input columns
    fit_idx: np.ndarray | None = None         # rating rows the model was fitted on (and its history built from)
    validation_idx: np.ndarray | None = None  # rating rows held out for early stopping (never fitted)
    visitor_inputs: dict[str, np.ndarray] | None = None  # a visitor's transformed user inputs (batch of 1)
    final_history: dict | None = None  # fit_predict(refit=True): the final fit's history (``history``: validation's)
    # fit_predict(refit=True, keep_validation_fit=True): the validation fit's predictions of test_idx
    validation_fit_predictions: np.ndarray | None = None
    member_models: list | None = None  # HParams.ensemble_apart: the single models it assembled, in order


def fit_predict(data: MovieLensData, train_idx: np.ndarray, test_idx: np.ndarray, hp: HParams,
                *, validation_fraction: float = 0.05, refit: bool = False, keep_validation_fit: bool = False,
                verbose: int = 2) -> TwoTowerResult:
    """Fits on train_idx (early stopping on a slice of it) and predicts test_idx, clipped to the
    training ratings' range (as the served model clips: 1..5 on ML-1M, 0.5..5 on ml-latest).

    refit: the fit above only chooses the epoch count (its best epoch on the validation slice);
    a final fit on all of train_idx runs that many epochs and predicts, as a baseline that
    chose its knobs on a validation slice is then fitted on the whole train part (the myfm
    peer's rank). The final fit has no retrieval towers: they are fitted apart from the rating
    towers and never change a predicted rating (model.model). ``seconds`` covers both fits;
    the result's ``history`` is the validation fit's, ``final_history`` the final fit's.
    keep_validation_fit: with refit, the validation fit's predictions of test_idx are kept too
    (``benchmarks.tune --refit-check`` compares the two fits on rows cut from a train part).
    Models trained apart (HParams.ensemble_apart) with refit: the validation fit is the first
    member alone, and every member refits for its best epoch count. The members differ only in
    their seed, so one count serves them all, and K + 1 fits cost about half of 2K."""
    start = time.perf_counter()
    prepared = prepare(data, train_idx, hp, validation_fraction=validation_fraction)
    validation_hp = member_hparams(hp, 0) if refit and hp.ensemble_apart else hp
    result = fit_model(data, train_idx, validation_hp, prepared=prepared, verbose=verbose)
    scale = f.rating_scale(data.ratings.rating[train_idx])
    kept = predict_clipped(result, test_idx, scale) if refit and keep_validation_fit else None
    if refit:
        # the Gibbs towers' weight too is chosen on the validation slice (model.blended_towers)
        chosen = {"gibbs_weight": result.history["gibbs"]["weight"]} if "gibbs" in result.history else {}
        final_hp = dataclasses.replace(hp, epochs=result.history["best_epoch"] + 1, retrieval_dim=0, **chosen)
        final = fit_model(data, train_idx, final_hp, prepared=prepared.without_validation(), verbose=verbose)
        final.final_history = final.history
        final.history = result.history  # the validation numbers come from the fit that chose
        result = final
        result.validation_fit_predictions = kept
    result.predictions = predict_clipped(result, test_idx, scale)
    result.seconds = time.perf_counter() - start
    return result


def predict_clipped(result: TwoTowerResult, idx: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """A fitted model's ratings of rows idx, clipped to ``scale`` as the served model clips."""
    return np.clip(result.model.predict(result.inputs(idx), batch_size=16384, verbose=0), *scale)


@dataclass
class PreparedFit:
    """A random split's train part, analysed and transformed, cut into fit and validation rows."""

    vocab: object
    inputs: object            # callable: rating row indices -> model input columns
    labels: np.ndarray        # every rating's label
    fit_idx: np.ndarray
    validation_idx: np.ndarray
    history: RatingHistory    # built from the fitted rows only
    global_mean: float
    user_x: np.ndarray        # every rating's transformed user index
    movie_x: np.ndarray
    user_index: dict
    movie_index: dict
    user_table: dict
    movie_table: dict
    visitor_table: dict | None = None  # the transformed user inputs of a visitor (user id -1), batch of 1

    def without_validation(self) -> "PreparedFit":
        """The same analysis with the validation slice folded back into the fitted rows (in the
        order prepare(validation_fraction=0) gives them: the same seeded permutation) and the
        history and mean rebuilt from them: a final fit's data without analysing the split again."""
        rows = np.concatenate([self.validation_idx, self.fit_idx])
        history = RatingHistory.from_ratings(self.user_x[rows], self.movie_x[rows], self.labels[rows], self.vocab)
        return dataclasses.replace(self, fit_idx=rows, validation_idx=rows[:0], history=history,
                                   global_mean=float(self.labels[rows].mean()))


def validation_cut(train_idx: np.ndarray, seed: int, validation_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(fitted rows, validation rows) of train_idx: a seeded permutation, its first
    ``validation_fraction`` held out for early stopping and for choosing knobs (``prepare``'s
    cut; ``benchmarks.tune --peer`` scores the myfm peer on the same rows)."""
    shuffled = np.random.default_rng(seed).permutation(train_idx)
    n_val = int(len(shuffled) * validation_fraction)
    return shuffled[n_val:], shuffled[:n_val]


def prepare(data: MovieLensData, train_idx: np.ndarray, hp: HParams, *,
            validation_fraction: float = 0.05) -> PreparedFit:
    """Analyses and transforms train_idx and cuts a validation slice off it (seeded by hp.seed)."""
    with tempfile.TemporaryDirectory() as workdir:
        output = analyse(data, train_idx, workdir)
        vocab = vocab_from_transform(output)
        user_ids, movie_ids = np.array(sorted(data.users)), np.array(sorted(data.movies))
        user_table = _transform_table(output, _rows(data, user_ids, movie_ids[:1]), USER_XF)
        movie_table = _transform_table(output, _rows(data, user_ids[:1], movie_ids), MOVIE_XF)
        visitor_table = _transform_table(output, _visitor_rows(data), USER_XF)
    user_index = {int(u): i for i, u in enumerate(user_ids)}
    movie_index = {int(m): i for i, m in enumerate(movie_ids)}
    u = np.searchsorted(user_ids, data.ratings.user_id)
    m = np.searchsorted(movie_ids, data.ratings.movie_id)

    def inputs(idx: np.ndarray) -> dict[str, np.ndarray]:
        cols = {k: user_table[k][u[idx]] for k in USER_XF}
        cols.update({k: movie_table[k][m[idx]] for k in MOVIE_XF})
        return {k: cols[k] for k in MODEL_INPUTS}

    fit_idx, val_idx = validation_cut(train_idx, hp.seed, validation_fraction)
    labels = data.ratings.rating
    user_x, movie_x = user_table[f.USER_ID_XF][u], movie_table[f.MOVIE_ID_XF][m]
    # the towers' histories: the fitted ratings only (never validation or test ones)
    ratings = RatingHistory.from_ratings(user_x[fit_idx], movie_x[fit_idx], labels[fit_idx], vocab)
    return PreparedFit(vocab, inputs, labels, fit_idx, val_idx, ratings, float(labels[fit_idx].mean()),
                       user_x, movie_x, user_index, movie_index, user_table, movie_table, visitor_table)


def fit_model(data: MovieLensData, train_idx: np.ndarray, hp: HParams, *,
              validation_fraction: float = 0.05, verbose: int = 2,
              prepared: PreparedFit | None = None) -> TwoTowerResult:
    """Analyses, transforms and fits on train_idx; predictions are left empty.

    prepared: prepare()'s result for the same data, train_idx, seed and validation_fraction
    (several variants fitted on one split analyse it once)."""
    start = time.perf_counter()
    p = prepared or prepare(data, train_idx, hp, validation_fraction=validation_fraction)
    if hp.ensemble_apart:
        result = _fit_apart(data, train_idx, hp, p, verbose, start)
    else:
        result = _fit_one(hp, p, verbose)
    if skipped(hp, len(p.fit_idx)) is None:  # the served model's Gibbs towers (model.blended_towers), as the Trainer
        columns = p.inputs(p.fit_idx)
        rows = gibbs_rows((columns, p.labels[p.fit_idx]), training_movies(columns))
        evaluation = (p.inputs(p.validation_idx), p.labels[p.validation_idx]) if len(p.validation_idx) else None
        result.model, result.history["gibbs"] = blend(result.model, hp, rows, evaluation,
                                                      f.rating_scale(p.labels[p.fit_idx]))
    result.seconds = time.perf_counter() - start
    return result


def _fit_one(hp: HParams, p: PreparedFit, verbose: int) -> TwoTowerResult:
    """fit_model's single model (its towers, before any Gibbs towers)."""
    start = time.perf_counter()
    if not len(p.validation_idx) and hp.retrieval_dim > 0:
        raise ValueError("a fit without a validation slice has no data to choose the retrieval fit's knobs on: "
                         "set retrieval_dim=0 (rating predictions never read the retrieval towers)")
    fit_idx, val_idx, labels = p.fit_idx, p.validation_idx, p.labels
    model = build_model(p.vocab, hp, global_mean=p.global_mean, history=p.history)
    retrieval = fit_retrieval(model, p.user_x[fit_idx], p.movie_x[fit_idx], labels[fit_idx], p.user_x[val_idx],
                              p.movie_x[val_idx], labels[val_idx])
    evaluation = (p.inputs(val_idx), labels[val_idx]) if len(val_idx) else None  # None: a final fit, hp.epochs
    history = fit(model, hp, (p.inputs(fit_idx), labels[fit_idx]), evaluation, verbose=verbose)
    history["retrieval"] = retrieval
    return TwoTowerResult(np.empty(0, np.float32), time.perf_counter() - start, history, model, p.user_index,
                          p.movie_index, p.user_table, p.movie_table, p.inputs, fit_idx, val_idx,
                          p.visitor_table)


def _fit_apart(data: MovieLensData, train_idx: np.ndarray, hp: HParams, p: PreparedFit, verbose: int,
               start: float) -> TwoTowerResult:
    """HParams.ensemble_apart: each member fitted on its own on the same rows (model.ensemble_apart),
    then assembled. The history: each member's (``members``, ``member_best_epochs``), the
    members' epochs and rates one after another (``loss``, ``examples_per_second``), the
    assembled ensemble's validation RMSE (``val_rmse``, one value) and the longest member's best
    epoch (``best_epoch``)."""
    check_members(hp)
    fitted = []
    for k in range(hp.ensemble_size):
        fitted.append(fit_model(data, train_idx, member_hparams(hp, k), prepared=p, verbose=verbose))
    history = {**members_history([r.history for r in fitted]), "retrieval": fitted[0].history["retrieval"]}
    result = dataclasses.replace(fitted[0], history=history, model=assemble([r.model for r in fitted], hp, p.history),
                                 member_models=[r.model for r in fitted])
    if len(p.validation_idx):
        predicted = predict_clipped(result, p.validation_idx, f.rating_scale(p.labels[p.fit_idx]))
        history["val_rmse"] = [rmse(predicted, p.labels[p.validation_idx])]
        history["best_epoch"] = max(history["member_best_epochs"])
    else:
        history["best_epoch"] = None
    result.seconds = time.perf_counter() - start
    return result


class KerasHistory:
    """index.visitors.HistoryModel over a fitted TwoTowerResult's in-memory Keras model: what the
    served ``user_embedding_with_history`` signature computes (TwoTowerModel.history_vectors),
    without exporting a SavedModel, so the new-users benchmark runs the service's own
    recommend_for_history on the model it just fitted. Raw movie ids go through the same
    transformed table as every movie of the fit (an id outside the vocabulary: its OOV bucket);
    a user id the fit holds reads that user's features, any other one (a visitor) the unknown
    user's, as the signature does."""

    def __init__(self, result: TwoTowerResult) -> None:
        if result.visitor_inputs is None or getattr(result.model, "retrieval", None) is None:
            raise ValueError("KerasHistory needs a model with retrieval towers fitted by fit_model")
        self.result = result
        self._movie_x = np.asarray(result.movie_table[f.MOVIE_ID_XF]).reshape(-1)

    def _user_inputs(self, user_id: int) -> dict[str, tf.Tensor]:
        row = self.result.user_index.get(int(user_id))
        table = (self.result.visitor_inputs if row is None
                 else {k: v[row:row + 1] for k, v in self.result.user_table.items()})
        return {k: tf.constant(v) for k, v in table.items()}

    def vectors(self, movie_ids: np.ndarray, ratings: np.ndarray,
                user_id: int = VISITOR_USER_ID) -> HistoryVectors:
        rows = [self.result.movie_index[int(m)] for m in np.asarray(movie_ids).reshape(-1).tolist()]
        movies = tf.constant(self._movie_x[rows].astype(np.int64).reshape(-1))
        out = self.result.model.history_vectors(self._user_inputs(user_id), movies,
                                                 tf.constant(np.asarray(ratings, np.float32).reshape(-1)))
        reads = bool(out["reads_history"].numpy()[0])
        return HistoryVectors(query=out["query"].numpy()[0], terms=out["query_terms"].numpy(),
                              embedding=out["embedding"].numpy()[0] if reads else None,
                              bias=float(out["bias"].numpy()[0]) if reads else None)
