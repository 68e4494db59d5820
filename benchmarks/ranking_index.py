"""Ranking through the index, as the service ranks: what both ranking protocols share.

benchmarks.ranking (held-out ratings) and benchmarks.ranking_new_users (held-out users) build
an index version from a model's embeddings like the export job does (``indexed``), and name
their data by dataset; the two-tower model's vectors come from its own layers
(``two_tower_embeddings``).
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from data.features import rating_scale
from data.movielens_files import MovieLensData
from index import ann, metadata
from index.builder import Gate, build_index_version
from index.embed import Embeddings
from index.similarity import Similarity


def dataset_name(data_dir: Path) -> str:
    """A repo-neutral name for results: the folder's name (``ml-1m``), never an absolute path."""
    return Path(data_dir).resolve().name


# --- ranking through the index (the service's own code) ------------------------------------
@contextlib.contextmanager
def indexed(embeddings: Embeddings, train: MovieLensData, index_type: str = "flat",
            workdir: Path | None = None) -> Iterator[tuple[Similarity, dict]]:
    """An index version built like the export job's, its seen map from ``train``'s ratings and
    its predicted ratings clipped to their range (as the Trainer's model clips them)."""
    seen = metadata.seen_csr(embeddings.user_ids, embeddings.movie_ids, train.ratings.user_id,
                             train.ratings.movie_id)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        result = build_index_version(
            Path(tmp), "benchmark", embeddings,
            metadata.user_records(embeddings.user_ids.tolist(), train.users),
            metadata.movie_records(embeddings.movie_ids.tolist(), train.movies), seen,
            ann.AnnConfig(index_type=index_type), Gate(min_recall=0.0, max_latency_ms=1e9),
            provenance={"rating_scale": list(rating_scale(train.ratings.rating))})
        yield Similarity.load(result.folder), result.manifest


def rank_through(similarity: Similarity, users: Sequence[int], n: int = 50,
                 **recommend: object) -> tuple[dict[int, list[int]], float]:
    """Each user's top n from ``Similarity.recommend`` (training movies excluded); ms per user."""
    known = set(similarity.user_ids.tolist())
    start = time.perf_counter()
    ranked = {u: [h.id for h in similarity.recommend(u, n, exclude_seen=True, **recommend)]
              for u in users if u in known}
    return ranked, 1000 * (time.perf_counter() - start) / max(len(ranked), 1)


def two_tower_embeddings(result) -> Embeddings:
    """Every user's and movie's vectors in both of the model's spaces, plus the rating biases,
    computed by the model's own layers (what the SavedModel's signatures return)."""
    from data import features as f

    model = result.model
    user_ids = np.array(sorted(result.user_index), np.int64)
    movie_ids = np.array(sorted(result.movie_index), np.int64)
    users, movies = result.user_table[f.USER_ID_XF], result.movie_table[f.MOVIE_ID_XF]
    retrieval = model.retrieval
    user_vectors, user_bias = (x.numpy() for x in model.user_outputs(result.user_table))
    movie_vectors, movie_bias = (x.numpy() for x in model.movie_outputs(result.movie_table))
    return Embeddings(
        user_ids, user_vectors, movie_ids, movie_vectors,
        user_bias=user_bias + model.global_mean, movie_bias=movie_bias,
        query_vectors=None if retrieval is None else retrieval.served_query(users).numpy(),
        candidate_vectors=None if retrieval is None else retrieval.served_candidate(movies).numpy(),
        movie_query_vectors=None if retrieval is None else retrieval.served_movie_query(movies).numpy())
