"""/movies: title search, and /movies/{movie_id}/similar: movies most similar to a movie.

Plain ``def`` handlers (FastAPI's thread pool): both query the index (index.service says why).
"""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Path as PathParam, Query

from index.routes.dependencies import MAX_SEARCH_LIMIT, K, Live, hits, meta, snapshot
from index.routes.models import MovieSearch, SimilarMovies
from index.similarity import BY_EMBEDDING, UnknownIdError
from index.title_search import MAX_QUERY_CHARS

router = APIRouter()


@router.get("/movies", response_model=MovieSearch,
            summary="Movies by title: case- and accent-insensitive, 'The Matrix' finds 'Matrix, "
                    "The'; whole-title, prefix and word-start matches first, then the most rated",
            responses={422: {"description": "empty, blank or too long query; limit out of range"}})
def search_movies(live: Live,
                  query: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS,
                                     description="part of a title"),
                  limit: int = Query(10, ge=1, le=MAX_SEARCH_LIMIT,
                                     description=f"results, 1..{MAX_SEARCH_LIMIT}")
                  ) -> dict[str, Any]:
    if not query.strip():
        raise HTTPException(status_code=422, detail=[{
            "loc": ["query", "query"], "type": "value_error",
            "msg": "query must contain something other than white space", "input": query}])
    s = snapshot(live)
    found, total = s.search_movies(query, limit)
    return {**meta(s), "query": query, "total": total,
            "results": [{**n.info, "rated_by": int(n.score)} for n in found]}


@router.get("/movies/{movie_id}/similar", response_model=SimilarMovies,
            summary="Movies most similar to a movie (itself excluded; `metric` says how)",
            responses={404: {"description": "unknown movie, or no poster for it"}})
def similar_movies(live: Live,
                   movie_id: int = PathParam(..., description="MovieLens movie id"),
                   k: int = K,
                   by: Literal["embedding", "posters"] = Query(
                       BY_EMBEDDING, description="model embedding or poster CNN")
                   ) -> dict[str, Any]:
    s = snapshot(live)
    try:
        found = s.similar_movies(movie_id, k, by=by)
        query = s.movie(movie_id)
    except UnknownIdError as error:
        raise HTTPException(status_code=404, detail=error.message) from None
    metric = s.similar_metric if by == BY_EMBEDDING else "cosine"
    return {**meta(s), "by": by, "metric": metric, "query": query, **hits(found)}
