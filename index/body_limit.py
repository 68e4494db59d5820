"""ASGI middleware: a request body over a size limit is refused (413) before it is read whole.

Why: POST /recommendations takes a JSON body, and a body is parsed into Python objects all
at once; a client could otherwise make the service allocate whatever it sends. A declared
``Content-Length`` over the limit is refused without reading a byte; a body without one
(chunked) is counted as it arrives and refused once it passes the limit.
"""
from __future__ import annotations

import json

#: 500 ratings ({"movie_id": 123456, "rating": 4.5}, ~35 bytes each) fit 16 times over
MAX_BODY_BYTES = 256 * 1024


class BodyLimit:
    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send)
            return
        received, refused = 0, False

        async def counted_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # answer now; the app sees the client leave
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            if not refused:  # after a 413 nothing else goes out
                await send(message)

        await self.app(scope, counted_receive, guarded_send)
