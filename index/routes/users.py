"""/users/{user_id}: a user's profile, its most similar users and its recommendations.

Plain ``def`` handlers (FastAPI's thread pool): all of them query the index (index.service
says why). /recommendations' defaults: the request's, else the service's (``--candidates``,
``--rerank-weight``: ``dependencies.ServiceDefaults``), else the index version's; the router
is shared by every app, so its parameters default to None and `openapi_with_service_defaults`
shows the service's values in the app's schema (and /docs), as the defaults they are.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Path as PathParam, Query

from data import features as f
from index.routes.dependencies import (
    MAX_RERANK_WEIGHT,
    MAX_TOP_RATED,
    Defaults,
    K,
    Live,
    Models,
    hits,
    meta,
    snapshot,
)
from index.routes.explained import explained_results, plain_results
from index.routes.models import Recommendations, SimilarUsers, UserProfile
from index.similarity import MAX_CANDIDATES, Neighbour, Similarity, UnknownIdError
from index.visitors import MAX_HISTORY, ModelUnavailableError

RECOMMENDATIONS = "/users/{user_id}/recommendations"

router = APIRouter()


@router.get("/users/{user_id}", response_model=UserProfile,
            summary="A user's demographics and top-rated training movies",
            responses={404: {"description": "unknown user"}})
def user_profile(live: Live,
                 user_id: int = PathParam(..., description="MovieLens user id"),
                 top: int = Query(10, ge=0, le=MAX_TOP_RATED,
                                  description=f"top-rated movies to list, 0..{MAX_TOP_RATED}")
                 ) -> dict[str, Any]:
    s = snapshot(live)
    try:
        user = s.user(user_id)
        rated = s.top_rated(user_id, top) if top else []
        seen_count, rated_count = len(s.seen(user_id)), s.rated_count(user_id)
    except UnknownIdError as error:
        raise HTTPException(status_code=404, detail=error.message) from None
    return {**meta(s), "user": user, "seen_count": seen_count, "rated_count": rated_count,
            "top_rated_from": (s.manifest.get("seen_ratings_from") or "index") if s.has_seen_ratings else None,
            "top_rated": [{**r.info, f.RATING: r.rating} for r in rated]}


@router.get("/users/{user_id}/similar", response_model=SimilarUsers,
            summary="Users most similar to a user (cosine in the index's similar space)",
            responses={404: {"description": "unknown user"}})
def similar_users(live: Live,
                  user_id: int = PathParam(..., description="MovieLens user id"),
                  k: int = K) -> dict[str, Any]:
    s = snapshot(live)
    try:
        found = s.similar_users(user_id, k)
        query = s.user(user_id)
    except UnknownIdError as error:
        raise HTTPException(status_code=404, detail=error.message) from None
    return {**meta(s), "metric": "cosine", "query": query, **hits(found)}


@router.get(RECOMMENDATIONS, response_model=Recommendations,
            summary="Top movies for a user: FAISS candidates by retrieval score, re-ranked with "
                    "the predicted rating",
            responses={404: {"description": "unknown user"}})
def recommendations(live: Live, defaults: Defaults, models: Models,
                    user_id: int = PathParam(..., description="MovieLens user id"),
                    k: int = K,
                    exclude_seen: bool = Query(
                        True, description="leave out movies the user rated"),
                    candidates: int | None = Query(
                        None, ge=1, le=MAX_CANDIDATES,
                        description="movies FAISS returns for re-ranking, raised to k "
                                    "(default: the index version's)"),
                    rerank_weight: float | None = Query(
                        None, ge=-MAX_RERANK_WEIGHT, le=MAX_RERANK_WEIGHT,
                        description="score = retrieval score + rerank_weight * predicted "
                                    "rating; 0: retrieval order (default: the index "
                                    "version's, chosen for its model on eval data)"),
                    because: int = Query(
                        3, ge=0, le=MAX_HISTORY,
                        description="training movies listed per result by their contribution to "
                                    "its retrieval score (the model's user_embedding_with_history "
                                    "signature given the user's training ratings); 0: none")
                    ) -> dict[str, Any]:
    s = snapshot(live)
    candidates, rerank_weight = defaults.resolve(s, candidates, rerank_weight)
    try:
        found = s.recommend(user_id, k, exclude_seen=exclude_seen, candidates=candidates,
                            rerank_weight=rerank_weight)
        query = s.user(user_id)
        seen_count = len(s.seen(user_id))
    except UnknownIdError as error:
        raise HTTPException(status_code=404, detail=error.message) from None
    results, note = _with_because(s, models, user_id, found, because)
    return {**meta(s), "metric": s.recommend_metric, "stages": s.stages,
            "candidates": s.candidates_fetched(k, candidates),
            "rerank_weight": rerank_weight, "exclude_seen": exclude_seen,
            "seen_count": seen_count, "query": query, **hits(found),
            "retrieval_scores": [n.retrieval_score for n in found],
            "predicted_ratings": [n.predicted_rating for n in found],
            "because_note": note, "results": results}


def _with_because(s: Similarity, models: Models, user_id: int, found: list[Neighbour],
                  top: int) -> tuple[list[dict[str, Any]], str | None]:
    """The results with ``because`` from the user's training ratings (the history the index's
    query of the user was computed from), or without it and why."""
    if top == 0:
        return plain_results(found), None
    if not s.can_explain:
        return plain_results(found), f"index version {s.version} has no retrieval space to explain scores in"
    history_ids, history_ratings = s.training_history(user_id)
    if not len(history_ids):
        return plain_results(found), f"index version {s.version} holds no training ratings of user {user_id}"
    try:
        vectors = models.for_index(s).vectors(history_ids, history_ratings, user_id)
    except ModelUnavailableError as error:
        return plain_results(found), str(error)
    return explained_results(s, found, vectors, history_ids, history_ratings, top), None


def openapi_with_service_defaults(app: FastAPI) -> dict[str, Any]:
    """``app.openapi``: FastAPI's schema, with the service-wide defaults (``app.state.defaults``)
    as /recommendations' ``candidates`` / ``rerank_weight`` defaults: what a request without
    them gets. Built once, then cached by FastAPI (``app.openapi_schema``)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        defaults = app.state.defaults
        values = {"candidates": defaults.candidates, "rerank_weight": defaults.rerank_weight}
        for parameter in schema["paths"][RECOMMENDATIONS]["get"]["parameters"]:
            if values.get(parameter["name"]) is not None:
                parameter["schema"]["default"] = values[parameter["name"]]
    return app.openapi_schema
