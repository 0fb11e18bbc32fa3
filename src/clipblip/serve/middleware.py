"""The outermost layer of the app (plain ASGI): where a request is refused from its head, before a byte of its body
is read, and where the body is read under a size cap and a deadline. Times every request for /metrics.

In order: a Host the server does not answer to (a page on another site that re-points its DNS name at 127.0.0.1,
"DNS rebinding", sends its own name), a missing or wrong API key, a declared Content-Length over the cap; then the
body, answered 413 as soon as it passes the cap and 408 when it has not arrived within the deadline. Every refusal
closes the connection: the body the client may still be sending is never read.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time

from .forms import Limits
from .metrics import Metrics

ENDPOINTS = ("/", "/embed", "/classify", "/search", "/caption", "/ask", "/match", "/healthz", "/info", "/metrics")
# Paths that hold no data, open without the API key: the page (its own requests send the key), liveness, the docs
PUBLIC = ("/", "/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


def endpoint(path: str) -> str:
    """A bounded set of names for /metrics (ids and unknown paths are not each their own entry)."""
    if path in ENDPOINTS:
        return path
    if path.startswith("/image/"):
        return "/image/{id}"
    return "/static" if path.startswith("/static/") else "other"


def host_name(host: str) -> str:
    """A Host header's name without its port, lowercased: "LocalHost:8000" -> "localhost", "[::1]:80" -> "[::1]";
    a bare IPv6 address as a setting ("::1") is bracketed as a Host header carries it."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] or host
    if host.count(":") > 1:
        return f"[{host}]"
    return host.split(":")[0]


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Guard:
    """`api_key`: required in X-API-Key on every path but PUBLIC; `allowed_hosts`: the Host names served (None:
    any). `limits`: max_body_bytes and body_timeout_s."""

    def __init__(self, app, limits: Limits, metrics: Metrics, api_key: str | None = None,
                 allowed_hosts=None):
        self.app, self.limits, self.metrics = app, limits, metrics
        self.key = api_key.encode() if api_key else None
        self.hosts = None if allowed_hosts is None else frozenset(map(host_name, allowed_hosts))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            try:
                headers = _first_values(scope["headers"])
                self._check_head(scope["path"], headers)
                body = await self._body(receive)
            except Refused as r:
                return await _error(send_status, r.status, r.message)
            if body is None:
                status = 499  # the client left before its body was read (nginx's code for it)
                return
            self.metrics.in_flight += 1
            try:
                await self.app(scope, _replay(body, receive), send_status)
            finally:
                self.metrics.in_flight -= 1
        finally:
            self.metrics.record(endpoint(scope["path"]), status, time.perf_counter() - start)

    def _check_head(self, path: str, headers: dict[bytes, bytes]) -> None:
        if self.hosts is not None:
            host = headers.get(b"host", b"").decode("latin-1")
            if host_name(host) not in self.hosts:
                raise Refused(400, f"this server does not answer to the host {host[:100]!r}; it answers to "
                                   f"{', '.join(sorted(self.hosts))} (its --allowed-hosts)")
        if self.key and path not in PUBLIC and not path.startswith("/static/"):
            # compare_digest: the time taken does not tell how much of a guess was right
            if not hmac.compare_digest(headers.get(b"x-api-key", b""), self.key):
                raise Refused(401, "missing or wrong API key: send it in the X-API-Key header")
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            raise self._too_large()

    async def _body(self, receive) -> bytes | None:
        """The request body, or None when the client went away; Refused past the size cap or the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout_s
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:
                raise Refused(408, f"the request body did not arrive within {self.limits.body_timeout_s:g} s "
                                   "(the server's --body-timeout)") from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> Refused:
        return Refused(413, f"the request is larger than the limit of {self.limits.max_body_bytes} bytes (the "
                            "server's --max-upload-mb)")


def _first_values(headers) -> dict[bytes, bytes]:
    out = {}
    for name, value in headers:
        out.setdefault(name, value)
    return out


def _replay(body: bytes, receive):
    """A receive() that gives the body already read, then waits on the real one (for the client's disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
