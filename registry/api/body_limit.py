"""Limits on every request body: its size, and how long it may stall.

FastAPI reads a JSON body whole before the route runs (`POST /api/v1/search` took a 200 MiB body
and 600 MB of memory, unauthenticated). This ASGI middleware answers 413 at once when the
declared Content-Length is over the cap, and stops a body without one (chunked) as soon as the
bytes received pass it. Uploads stream their body to disk under their own, larger limit
(`registry.api.upload_parts`), so the caller exempts them from the size cap. Every body, uploads
included, answers 408 when no byte of it arrives for `stall_timeout_s` (like nginx's
client_body_timeout): a client trickling or abandoning its body does not hold a request for ever.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(max_bytes: int) -> str:
    return f"request body exceeds the limit of {max_bytes} bytes"


@dataclass
class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, except where `exempt(method, path)`, and
    bodies that stall for `stall_timeout_s` with 408."""

    app: ASGIApp
    max_bytes: int
    stall_timeout_s: float
    exempt: Callable[[str, str], bool] = lambda _method, _path: False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        capped = not self.exempt(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if capped and declared is not None and not _within(declared, self.max_bytes):
            await _answer_413(send, _too_large(self.max_bytes))
            return
        received = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # after the body only a disconnect can come: wait as long as it takes
                return await receive()
            try:
                async with asyncio.timeout(
                    self.stall_timeout_s
                ):  # no task per chunk, unlike wait_for
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"no byte of the request body arrived for {self.stall_timeout_s:g} s"
                ) from None
            if message["type"] != "http.request":
                return message
            received += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if capped and received > self.max_bytes:
                raise HTTPException(413, _too_large(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)


def _within(declared: bytes, max_bytes: int) -> bool:
    """True for a Content-Length of digits at most `max_bytes` (others: refused as too large)."""
    digits = declared.strip()
    return digits.isdigit() and len(digits) <= len(str(max_bytes)) and int(digits) <= max_bytes


async def _answer_413(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
