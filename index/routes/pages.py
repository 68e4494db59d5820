"""GET / (the browse page) and GET /docs (Swagger UI), each an HTML file of ``index/page/``
served under a Content-Security-Policy that lets it load nothing from elsewhere.

Why /docs is ours: FastAPI's own /docs and /redoc pull Swagger UI / ReDoc from a CDN with an
inline script, which that policy refuses and which needs the network; ``index/page/docs.html``
loads Swagger UI's files as the pinned ``fastapi-offline`` wheel ships them (mounted at
DOCS_ASSETS_URL by ``index.service.create_app``) and starts it from ``index/page/docs.js``.
The HTML is read once, by ``create_app`` (``app.state.page`` / ``app.state.docs_page``).
"""
from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

#: the browse page's files (index.html, browse.js, browse.css), served as they are
PAGE_DIR = Path(__file__).resolve().parent.parent / "page"
#: the page loads nothing from elsewhere (no CDN): the browser is told so too
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: Swagger UI's script, stylesheet and icon as the pinned fastapi-offline wheel ships them
#: (served at DOCS_ASSETS_URL); /docs is index/page/docs.html, started by index/page/docs.js
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).with_name("static")
DOCS_ASSETS_URL = "/docs-assets"

router = APIRouter()


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers={"Content-Security-Policy": PAGE_CSP,
                                       "X-Content-Type-Options": "nosniff"})


@router.get("/", include_in_schema=False)
async def root(request: Request) -> HTMLResponse:
    return _html(request.app.state.page)


@router.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    return _html(request.app.state.docs_page)
