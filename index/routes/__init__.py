"""The similarity service's endpoints, one ``APIRouter`` per resource (FastAPI's "bigger
applications" layout); ``index.service.create_app`` includes them.

``pages`` (/ and /docs), ``movies`` (/movies, /movies/{id}/similar), ``users`` (/users/{id},
its similar users and recommendations), ``health`` (/healthz, /version); the response models
(the OpenAPI schema) are in ``models``. Why routers and not closures in ``create_app``: each
resource reads on its own, and a handler reaches the live index through the app it serves
(``dependencies``: FastAPI ``Depends`` on ``request.app.state``), so one module-level router
serves every app. Which handlers are plain ``def`` (thread pool) and which ``async def`` is
explained in ``index.service``'s docstring.
"""
