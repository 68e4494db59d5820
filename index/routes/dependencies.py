"""What every route needs from the app it serves: the live index, the service-wide defaults,
and the helpers that turn a snapshot into a response.

Why ``Depends`` on ``request.app.state`` (set by ``index.service.create_app``): the routers
are module-level and shared by every app (tests build many), so a handler finds its index
through the request, not a closure. The dependencies are ``async def`` because they only read
an attribute: a plain ``def`` one would send even /healthz through the thread pool. The
snapshot itself is taken in the handler (`snapshot`), not by a dependency: FastAPI resolves
dependencies before it validates the query, so a 503 dependency would answer a bad ``k``
with "no index" instead of 422 while no index is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request

from index.live import LiveIndex
from index.public_text import INDEX_DIR_NAME, public_text
from index.similarity import Neighbour, Similarity
from index.visitors import HistoryModels

MAX_K = 1000
K = Query(10, ge=1, le=MAX_K, description=f"number of results, 1..{MAX_K}")
MAX_RERANK_WEIGHT = 100.0
MAX_SEARCH_LIMIT = 100
MAX_TOP_RATED = 100


@dataclass(frozen=True)
class ServiceDefaults:
    """Service-wide defaults of /recommendations (``--candidates`` / ``--rerank-weight``);
    None takes the served index version's own."""

    candidates: int | None = None
    rerank_weight: float | None = None

    def resolve(self, s: Similarity, candidates: int | None, rerank_weight: float | None) -> tuple[int, float]:
        """A request's (candidates, rerank_weight): its own, else the service's, else version ``s``'s."""
        if candidates is None:
            candidates = s.default_candidates if self.candidates is None else self.candidates
        if rerank_weight is None:
            rerank_weight = s.default_rerank_weight if self.rerank_weight is None else self.rerank_weight
        return candidates, rerank_weight


async def live_index(request: Request) -> LiveIndex:
    return request.app.state.live


async def service_defaults(request: Request) -> ServiceDefaults:
    return request.app.state.defaults


async def history_models(request: Request) -> HistoryModels:
    return request.app.state.history_models


#: a handler's parameter ``live: Live`` is the app's LiveIndex
Live = Annotated[LiveIndex, Depends(live_index)]
#: the SavedModels that answer for explicit histories (index.visitors)
Models = Annotated[HistoryModels, Depends(history_models)]
Defaults = Annotated[ServiceDefaults, Depends(service_defaults)]


def client_error(live: LiveIndex) -> str | None:
    """The last reload error as clients may see it: live.last_error names full paths (logged
    as is); clients get them relative (index.public_text)."""
    return public_text(live.last_error, live.index_dir)


def snapshot(live: LiveIndex) -> Similarity:
    """The index version this request uses to its end; 503 while none is loaded."""
    current = live.current
    if current is None:
        detail = f"no index loaded from {INDEX_DIR_NAME}"
        if live.last_error:
            detail += f" ({client_error(live)})"
        raise HTTPException(status_code=503, detail=detail)
    return current


def meta(s: Similarity) -> dict[str, str]:
    return {"index_version": s.version, "model_version": s.model_version}


def hits(neighbours: list[Neighbour]) -> dict[str, Any]:
    return {"ids": [n.id for n in neighbours], "scores": [n.score for n in neighbours],
            "results": [{**n.info, "score": n.score} for n in neighbours]}
