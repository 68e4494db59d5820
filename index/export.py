"""Export job: pushed SavedModel + its catalogue -> a gated, published FAISS index version.

The job is ``export_index(options)``, an ``ExportOptions`` (``index.export_options``: the
dataclass and the flags that fill it) in, an exit status out, so code calls it without
argparse; ``movielens-tfx export-index`` (``run(args)``) and the Kubeflow index step
(``main(argv)``) only turn flags into options. It:

1. pick the model: the latest numeric version under ``--model-base-path`` (TF-Serving's
   layout, what the Pusher writes) or ``--version``;
2. read users, movies and the "seen" map (rated pairs, for exclude_seen) from the model
   version's own catalogue (``assets.extra/catalogue/``, which the Trainer copied from
   ExampleGen's catalogue artifact), so the index describes exactly the data its model was
   trained on; ``--data`` (any folder ``load_movielens`` reads; ``--ratings`` swaps in a
   ratings CSV) overrides it, e.g. for a model pushed before catalogues existed;
3. run the model's ``user_embedding`` / ``movie_embedding`` signatures (rating vectors and
   biases) and ``user_query_embedding`` / ``movie_candidate_embedding`` (retrieval vectors;
   ``movie_query_embedding`` too when present) over every user and movie (batched, with a
   progress bar); a model without them gives a single-stage, rating-space version;
4. ``index.builder``: cosine indexes (movies, users) in the ``--similar-space``, an
   inner-product index over the retrieval candidates (stage one of /recommendations; the
   rating terms stored beside it re-rank),
   optional poster index; recall@10 vs exact search and p50 query latency; the gate decides
   whether ``LATEST`` moves.

Exit status: 0 published (or this model version was published before: nothing to do, unless
``--overwrite``), 1 built but rejected by the gate (LATEST untouched), 2 bad input.

``--data``, ``--ratings``, ``--model-base-path``, ``--index-dir``, ``--artifacts`` and
``--output-manifest`` may be URIs (gs://...): the data and the SavedModel are read through
``tf.io.gfile``, the index is built locally and uploaded (``index.builder``).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from common import fileio
from common.logs import terminal
from index import ann, layout, metadata
from index.builder import BuildResult, Gate, VersionExistsError, build_index_version
from index.embed import RATING_SPACE, Embeddings
from index.export_options import ExportOptions, add_arguments
from index.public_text import dataset_name

if TYPE_CHECKING:
    from data.movielens_files import Movie, User

EXIT_OK, EXIT_GATE_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="movielens-tfx export-index",
        description="Embed every user and movie with the pushed model and publish FAISS indexes "
                    "(gated on recall@10 and latency).")
    add_arguments(parser)
    return parser


def _log(message: str) -> None:
    print(f"[export-index] {message}", file=terminal(), flush=True)


def run(args: argparse.Namespace) -> int:
    """`movielens-tfx export-index` (commands.registry): the parsed flags, as options, to the job."""
    return export_index(ExportOptions.from_args(args))


def export_index(options: ExportOptions) -> int:
    """The job: embed, build, gate, publish (module docstring). Returns EXIT_OK (published, or
    published before), EXIT_GATE_FAILED (built, rejected) or EXIT_BAD_INPUT; says why on the
    terminal."""
    from data.movielens_files import MovieLensFormatError
    from index.embed import ModelNotFoundError, resolve_model_dir, saved_model_embeddings

    started = time.perf_counter()
    index_dir = options.index_dir or layout.default_index_dir(options.artifacts)
    base_path = options.model_base_path or layout.default_model_base_path(options.artifacts)
    try:
        if options.index_factory is not None:  # syntax errors before minutes of embedding
            ann.check_factory(options.index_factory)
        model_dir, model_version = resolve_model_dir(base_path, options.version)
        existing = layout.child(index_dir, str(model_version), layout.MANIFEST)
        if fileio.isfile(existing) and not options.overwrite:
            # Idempotent for a nightly job: this model is indexed (and passed its gate) already.
            built_at = layout.read_json(existing).get("built_at")
            print(f"index version {model_version} already published in {index_dir} (built "
                  f"{built_at}); nothing to do (LATEST -> {layout.read_latest(index_dir)}); "
                  f"pass --overwrite to rebuild it")
            return EXIT_OK
        _log(f"model {model_dir}")
        source = load_source(model_dir, options.data, options.ratings, options.skip_bad_rows)
        _log(source.describe)
        if not source.users or not source.movies:
            raise ValueError(f"{source.where}: no users or no movies to index")
        user_ids, movie_ids = sorted(source.users), sorted(source.movies)
        embeddings = saved_model_embeddings(model_dir, user_ids, movie_ids, options.batch_size,
                                            progress=not options.no_progress,
                                            similar_space=options.similar_space)
        _log(describe_stages(embeddings, options.similar_space))
        seen = metadata.seen_csr(embeddings.user_ids, embeddings.movie_ids,
                                 source.seen_users, source.seen_movies)
        if source.seen_ratings is not None:  # the users' top-rated movies (browse page)
            seen = (*seen, metadata.seen_ratings(embeddings.user_ids, embeddings.movie_ids,
                                                 source.seen_users, source.seen_movies,
                                                 source.seen_ratings, seen))
        extra = None
        if options.posters is not None:
            from index.posters import parse_weights, poster_writer

            extra = poster_writer(options.posters, options.poster_model,
                                  parse_weights(options.poster_weights), options.poster_image_size,
                                  options.poster_batch_size, not options.no_progress, options.seed,
                                  log=_log)
        config = ann.AnnConfig(index_type=options.index_type, factory=options.index_factory,
                               hnsw_m=options.hnsw_m, ef_construction=options.ef_construction,
                               ef_search=options.ef_search, nlist=options.nlist,
                               nprobe=options.nprobe, k_factor=options.k_factor,
                               train_size=options.train_size, target_recall=options.min_recall,
                               recall_queries=options.recall_queries, seed=options.seed)
        result = build_index_version(
            index_dir, str(model_version), embeddings,
            metadata.user_records(user_ids, source.users),
            metadata.movie_records(movie_ids, source.movies), seen, config,
            Gate(min_recall=options.min_recall, max_latency_ms=options.max_latency_ms),
            # model_path/data_source/catalogue: full paths, for the server's own records;
            # dataset: the data by name, what /version and anyone reading a copy may see
            provenance={"model_path": str(model_dir), "data_source": source.data_source,
                        "dataset": dataset_name(source.data_source),
                        "catalogue": source.catalogue,
                        "seen_ratings_from": source.seen_ratings_from,
                        "two_stage": _two_stage_settings(model_dir),
                        "rating_scale": list(source.rating_scale) if source.rating_scale else None,
                        "ratings_source": str(options.ratings) if options.ratings else None,
                        "load_and_embed_seconds": round(time.perf_counter() - started, 3)},
            extra=extra, overwrite=options.overwrite, keep_rejected=options.keep_rejected,
            latency_queries=options.latency_queries, log=_log)
    except (ModelNotFoundError, MovieLensFormatError, VersionExistsError, FileNotFoundError,
            ValueError) as error:  # CatalogueNotFoundError is a FileNotFoundError
        print(f"error: {error}", file=terminal())
        return EXIT_BAD_INPUT

    print(describe(result, index_dir))
    if options.output_manifest is not None and result.folder is not None:
        fileio.copy_file(layout.child(result.folder, layout.MANIFEST), options.output_manifest)
    if not result.passed:
        print(f"error: index version {result.version} failed its gate; LATEST still points at "
              f"{layout.read_latest(index_dir) or 'nothing'}: " + "; ".join(result.reasons),
              file=terminal())
        return EXIT_GATE_FAILED
    return EXIT_OK


@dataclass
class Source:
    """Where the index's users, movies and seen map come from: the model's catalogue or --data."""

    users: Mapping[int, User]
    movies: Mapping[int, Movie]
    seen_users: np.ndarray
    seen_movies: np.ndarray
    where: str           # the folder read, for messages
    data_source: str     # the raw MovieLens folder the data came from
    catalogue: str | None  # the catalogue folder, None with --data
    describe: str
    #: each seen pair's rating (NaN: none), and what they are; None for older catalogues
    seen_ratings: np.ndarray | None = None
    seen_ratings_from: str | None = None
    #: (lowest, highest) training rating, what predicted ratings are clipped to as the served
    #: model clips them; None when unknown (an older catalogue)
    rating_scale: tuple[float, float] | None = None


def load_source(model_dir: Path | str, data: Path | str | None, ratings: Path | str | None, skip_bad_rows: bool) -> Source:
    """The model version's catalogue, or (override) the MovieLens folder ``data``."""
    from data.catalogue import CatalogueNotFoundError, has_catalogue, model_catalogue_dir, read_catalogue
    from data.features import rating_scale
    from data.movielens_files import load_movielens, summary

    if data is not None:
        loaded = load_movielens(data, ratings_csv=ratings, skip_bad_rows=skip_bad_rows)
        return Source(loaded.users, loaded.movies, loaded.ratings.user_id, loaded.ratings.movie_id,
                      str(data), loaded.source, None, f"--data override: {summary(loaded)}",
                      seen_ratings=loaded.ratings.rating, seen_ratings_from="all ratings in --data",
                      rating_scale=rating_scale(loaded.ratings.rating))
    if ratings is not None or skip_bad_rows:
        raise ValueError("--ratings and --skip-bad-rows apply to --data; without --data the users, "
                         "movies and seen map come from the model's catalogue")
    folder = model_catalogue_dir(model_dir)
    if not has_catalogue(folder):
        raise CatalogueNotFoundError(
            f"model {model_dir} carries no catalogue ({folder} is missing; models pushed before "
            f"catalogues existed have none): pass --data with the MovieLens folder it was trained on")
    catalogue = read_catalogue(folder)
    return Source(catalogue.users, catalogue.movies, catalogue.seen_user_ids, catalogue.seen_movie_ids,
                  folder, catalogue.source, folder,
                  f"catalogue {folder}: {len(catalogue.users):,} users, {len(catalogue.movies):,} movies, "
                  f"{len(catalogue.seen_user_ids):,} rated pairs (data from {catalogue.source})",
                  seen_ratings=catalogue.seen_train_ratings,
                  seen_ratings_from="train split" if catalogue.seen_train_ratings is not None else None,
                  rating_scale=catalogue.rating_scale)


def _two_stage_settings(model_dir: Path | str) -> dict | None:
    """The re-ranking weight and candidate count the Trainer chose for this model on its eval
    split (assets.extra/two_stage.json, model.two_stage); None for older pushes."""
    path = layout.child(model_dir, "assets.extra", "two_stage.json")
    if not fileio.isfile(path):
        return None
    settings = layout.read_json(path)
    _log(f"two-stage defaults from the model: top {settings['candidates']} candidates, rerank weight "
         f"{settings['rerank_weight']:g} (chosen on the Trainer's eval split)")
    return {k: settings[k] for k in ("rerank_weight", "candidates", "eval_ndcg_at_10_by_weight")}


def describe_stages(embeddings: Embeddings, asked_space: str) -> str:
    """What the version will support: recommendation stages and where similar items come from
    (with a note when the model cannot give the similar space that was asked for)."""
    e = embeddings
    if e.has_retrieval:
        recs = f"stage 1 FAISS over the retrieval space (R={e.query_vectors.shape[1]})"
    else:
        recs = "stage 1 FAISS by the rating towers' inner product (no retrieval signatures: an older model)"
    recs += (", stage 2 re-rank by predicted rating" if e.can_rate
             else "; no stage 2 (the model has no rating bias outputs)")
    similar = f"similar movies/users: {e.similar_space} space"
    if e.similar_by_movie_query:
        similar += " (movies by a one-movie history's query)"
    if asked_space != e.similar_space:
        similar += f" (note: --similar-space {asked_space} asked, but the model has no retrieval " \
                   f"signatures: falling back to {RATING_SPACE})"
    return f"recommendations: {recs}; {similar}"


def describe(result: BuildResult, index_dir: Path | str) -> str:
    """A short human summary of one build (printed by the job, useful in Kubeflow logs)."""
    m = result.manifest
    spaces = (f", retrieval R={m['retrieval_dimension']}, similar in the {m['similar_space']} space"
              if m.get("retrieval") else "")
    kind = m.get("index_factory") or m["index_type"]
    lines = [f"index version {result.version} ({kind}, D={m['dimension']}{spaces}): "
             f"{m['counts']['movies']:,} movies, {m['counts']['users']:,} users, "
             f"built in {m['build_seconds']:.1f} s"]
    for name, entry in m["indexes"].items():
        params = entry["params"]
        size = (f", {entry['bytes_per_vector']:.0f} B/vector" if entry.get("bytes_per_vector") is not None
                else "")
        lines.append(f"  {name:<14} recall@10 {entry['recall_at_10']:.4f}  "
                     f"{params.get('factory', params['index_type'])} {params.get('search') or ''}{size}")
    lat = m["latency_ms"]
    lines.append(f"  query latency p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms (k=10)")
    if result.passed:
        lines.append(f"  gate passed; published {result.folder}; LATEST -> {result.version}")
    else:
        where = f"kept in {result.folder}" if result.folder else "deleted"
        lines.append(f"  gate FAILED ({where}): " + "; ".join(result.reasons))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
