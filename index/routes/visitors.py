"""POST /recommendations: the two-stage list for a visitor's ratings, each result explained.

A plain ``def`` handler (FastAPI's thread pool), like every route that queries the index; it
also calls the model (index.visitors), which the first such request loads. Every limit is
checked before the model is asked, and answers 422 with what was wrong: no ratings, more than
index.visitors.MAX_HISTORY, a movie rated twice, a movie the index version lacks, a rating
outside the version's rating scale. The body itself is capped before it is read
(index.service's body limit: 413).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException

from data import features as f
from index.routes.dependencies import Defaults, Live, Models, meta, snapshot
from index.routes.explained import explained_results
from index.routes.models import VisitorRatings, VisitorRecommendations
from index.similarity import Similarity, UnknownIdError
from index.visitors import MAX_HISTORY, ModelUnavailableError, recommend_for_history

router = APIRouter()
#: unknown ids named in a 422, at most
MAX_NAMED = 10


def _checked_history(s: Similarity, body: VisitorRatings) -> tuple[np.ndarray, np.ndarray]:
    """(movie ids, ratings) of a body within every limit; HTTPException 422 otherwise."""
    ratings = body.ratings
    if not ratings:
        raise HTTPException(422, "ratings is empty: rate at least one movie")
    if len(ratings) > MAX_HISTORY:
        raise HTTPException(422, f"at most {MAX_HISTORY} ratings per request, got {len(ratings)}")
    ids = [r.movie_id for r in ratings]
    seen: set[int] = set()
    for movie_id in ids:
        if movie_id in seen:
            raise HTTPException(422, f"movie {movie_id} is rated more than once")
        seen.add(movie_id)
    unknown = s.unknown_movies(ids)
    if unknown:
        named = ", ".join(map(str, unknown[:MAX_NAMED])) + (" ..." if len(unknown) > MAX_NAMED else "")
        raise HTTPException(422, f"{len(unknown)} movie id(s) not in index version {s.version}: {named}")
    if body.user_id is not None:
        try:
            s.user(body.user_id)
        except UnknownIdError:
            raise HTTPException(422, f"user {body.user_id} is not in index version {s.version}") from None
    lowest, highest = s.rating_scale
    for r in ratings:
        if not (math.isfinite(r.rating) and lowest <= r.rating <= highest):
            raise HTTPException(422, f"movie {r.movie_id}: rating {r.rating:g} is outside the rating scale "
                                     f"{lowest:g}..{highest:g}")
    return np.array(ids, np.int64), np.array([r.rating for r in ratings], np.float32)


@router.post("/recommendations", response_model=VisitorRecommendations,
             summary="Top movies for a visitor's ratings, each with the rated movies behind it",
             responses={422: {"description": "a rating outside the limits"},
                        501: {"description": "the index version has no retrieval space"},
                        503: {"description": "no index loaded, or its model cannot be loaded"}})
def visitor_recommendations(body: VisitorRatings, live: Live, models: Models, defaults: Defaults) -> dict[str, Any]:
    s = snapshot(live)
    ids, ratings = _checked_history(s, body)
    if not s.manifest.get("retrieval"):
        raise HTTPException(501, f"index version {s.version} has no retrieval space: recommendations for "
                                 f"a history need the model's retrieval towers")
    candidates, weight = defaults.resolve(s, body.candidates, body.rerank_weight)
    try:
        model = models.for_index(s)
    except ModelUnavailableError as error:
        raise HTTPException(503, str(error)) from None
    found, vectors, note = recommend_for_history(
        s, model, ids, ratings, body.k, candidates, weight,
        **({} if body.user_id is None else {f.USER_ID: body.user_id, "exclude_movie_ids": s.seen(body.user_id)}))
    stages = "retrieval" if note else "retrieval+rerank"
    return {**meta(s), "metric": "retrieval_score" if note else "retrieval_score + rerank_weight * predicted_rating",
            "stages": stages, "stages_note": note, "candidates": max(candidates, body.k) if not note else body.k,
            "rerank_weight": weight, "history_count": len(ids),
            "ids": [n.id for n in found], "scores": [n.score for n in found],
            "results": explained_results(s, found, vectors, ids, ratings, body.because)}
