"""The hub's own origin for absolute links: the configured public URL, never the Host header.

Starlette builds `request.base_url` and `url_for` from the Host header, which the client writes:
a request with `Host: evil.example` would get pages whose links and copyable snippets point
there (and a cache in front would keep them for everyone). This ASGI middleware replaces the
scheme and Host of every request with `public_url` when it is configured, else with the address
of the socket the request arrived on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

_DEFAULT_PORTS = {"http": 80, "https": 443}


def public_origin(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of a public URL; ValueError if it names a path, query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        raise ValueError(f"public_url must be http(s)://host[:port], got {url!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"public_url must not have a path, query or fragment, got {url!r}")
    return parts.scheme, parts.netloc


@dataclass
class FixedOrigin:
    """Make every request's scheme and Host the hub's own (see the module docstring)."""

    app: ASGIApp
    public_url: str | None = None
    _public: tuple[str, str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.public_url is not None:
            self._public = public_origin(self.public_url)  # parsed once, not per request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scheme, host = self._origin(scope)
            headers = [(key, value) for key, value in scope["headers"] if key != b"host"]
            scope = {**scope, "scheme": scheme, "headers": [*headers, (b"host", host.encode())]}
        await self.app(scope, receive, send)

    def _origin(self, scope: Scope) -> tuple[str, str]:
        if self._public is not None:
            return self._public
        scheme = scope.get("scheme", "http")
        host, port = scope.get("server") or ("localhost", None)
        if port is None or port == _DEFAULT_PORTS.get(scheme):
            return scheme, host
        return scheme, f"{host}:{port}"
