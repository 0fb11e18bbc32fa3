"""The outermost layer of the app (plain ASGI): caps the request body and times every request."""

from __future__ import annotations

import json
import time

from .metrics import Metrics

ENDPOINTS = ("/", "/embed", "/classify", "/search", "/caption", "/ask", "/match", "/healthz", "/metrics")


def endpoint(path: str) -> str:
    """A bounded set of names for /metrics (ids and unknown paths are not each their own entry)."""
    if path in ENDPOINTS:
        return path
    if path.startswith("/image/"):
        return "/image/{id}"
    return "/static" if path.startswith("/static/") else "other"


class Guard:
    """Reads the whole body before the app runs, answering 413 as soon as it passes `max_body_bytes` (a declared
    Content-Length is checked before a byte is read); records endpoint, status and latency in `metrics`."""

    def __init__(self, app, max_body_bytes: int, metrics: Metrics):
        self.app, self.max_body_bytes, self.metrics = app, max_body_bytes, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500
        self.metrics.in_flight += 1

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            body = await self._body(scope, receive)
            if body is None:
                await _error(send_status, 413, f"the request is larger than the limit of {self.max_body_bytes} "
                                               "bytes (the server's --max-upload-mb)")
                return
            sent = False

            async def replay():
                nonlocal sent
                if sent:
                    return await receive()  # after the body: wait for the client to disconnect
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, send_status)
        finally:
            self.metrics.in_flight -= 1
            self.metrics.record(endpoint(scope["path"]), status, time.perf_counter() - start)

    async def _body(self, scope, receive) -> bytes | None:
        """The request body, or None when it is over the limit."""
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
