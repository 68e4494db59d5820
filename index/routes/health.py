"""/healthz (liveness/readiness) and /version (what is served).

``async def``: they read a few attributes (~0.1 ms), less than a thread-pool hop costs, and
must answer while every worker thread is busy with queries (index.service says why).
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from index.public_text import INDEX_DIR_NAME, dataset_name, model_relative
from index.routes.dependencies import Live, client_error, meta, snapshot

router = APIRouter()


@router.get("/healthz", summary="Liveness/readiness: 200 once an index is loaded")
async def healthz(live: Live) -> dict[str, Any]:
    s = snapshot(live)
    return {"status": "ok", **meta(s), "last_reload_error": client_error(live)}


@router.get("/version", summary="Model version and build facts of the served index")
async def version(live: Live) -> dict[str, Any]:
    s = snapshot(live)
    info = s.info()  # the full paths are for logs; here relative ones (index.public_text)
    return {**info, "folder": s.version, "catalogue": model_relative(info["catalogue"], s.model_version),
            "data_source": dataset_name(info["data_source"]),
            "index_dir": INDEX_DIR_NAME, "reloads": live.reloads,
            "last_reload_error": client_error(live), "last_check": live.last_check}
