"""Running the app under uvicorn, with what keeps idle and slow clients from holding the server: a header timeout,
a cap on open connections, and no WebSocket protocol (the app has no WebSocket endpoint).

uvicorn has no header timeout of its own: its keep-alive timer is cancelled by the first byte of a request, so a
client that sends half a request head, or connects and sends nothing, holds its connection (and a slot of
`limit_concurrency`) for ever. The body's deadline is the app's (middleware.Guard).
"""

from __future__ import annotations

import ipaddress

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import ClipBlipError
from .forms import Limits

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection that has not sent a whole request head within
    `head_timeout_s` of its start or of its last response."""

    head_timeout_s = 10.0
    _head_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expire(self) -> None:
        # h11 leaves IDLE when it has parsed a whole request head: still IDLE means none came since the timer was set
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def protocol(head_timeout_s: float) -> type[HeadTimeoutProtocol]:
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"head_timeout_s": head_timeout_s})


def config(app, host: str, port: int, limits: Limits, log_level: str = "info") -> uvicorn.Config:
    # uvicorn answers 503 once connections >= limit_concurrency, counting the one asking: + 1 serves max_connections
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol(limits.header_timeout_s),
                          ws="none", limit_concurrency=limits.max_connections + 1)


def run(app, host: str, port: int, limits: Limits, log_level: str = "info") -> None:
    uvicorn.Server(config(app, host, port, limits, log_level)).run()


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, setting: str | None) -> tuple[str, ...] | None:
    """The Host names to answer to, from --allowed-hosts (comma-separated; "*": any) or, without it, the loopback
    names when bound to loopback (a browser on this machine is the only client, and a rebinding page its attacker)
    and any name otherwise (the names a public server is reached by are not known here; use a key)."""
    if setting is not None:
        names = tuple(n.strip() for n in setting.split(",") if n.strip())
        if not names:
            raise ClipBlipError("--allowed-hosts is empty: give the names clients reach the server by, "
                                "comma-separated, or '*' for any")
        return None if "*" in names else names
    if is_loopback(host):
        return tuple(dict.fromkeys((*LOOPBACK_NAMES, host)))
    return None
