"""What one request may cost a server: a bounded body, and errors that never echo it.

Both the version's app and the router use these, so a single oversized or hostile request
can neither exhaust memory nor block the event loop that answers `/healthz`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

DEFAULT_MAX_BODY_BYTES = 1_000_000  # 1000 trips of about 150 bytes, with room to spare
MAX_TRIPS = 1000  # trips in one request, to a version's server or to the router

T = TypeVar("T")


def in_chunks(
    items: Iterable[T], size: Callable[[T], int] = lambda _: 1, limit: int = MAX_TRIPS
) -> list[list[T]]:
    """Consecutive items in groups whose sizes add up to at most `limit` (an item larger
    than that goes alone): what the router and its shadow mirror send in one call."""
    chunks: list[list[T]] = [[]]
    total = 0
    for item in items:
        if chunks[-1] and total + size(item) > limit:
            chunks.append([])
            total = 0
        chunks[-1].append(item)
        total += size(item)
    return chunks if chunks[-1] else []


def max_body_bytes() -> int:
    return int(os.environ.get("SERVING_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


async def read_body(
    receive: Any, send: Any, headers: Iterable[tuple[bytes, bytes]], limit: int
) -> bytes | None:
    """The request's body, or None when it was refused (413 sent) or the client left.

    A declared Content-Length over `limit` is refused before a byte of the body is read; a
    chunked body is read up to the limit and refused as soon as it passes it, so memory
    per request is bounded by the limit.
    """
    declared = dict(headers).get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        await refuse_too_large(send, limit)
        return None
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await refuse_too_large(send, limit)
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def refuse_too_large(send: Any, limit: int) -> None:
    detail = json.dumps({"detail": f"request body over {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(detail)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": detail})


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, before anything parses it
    (`read_body`); the app then receives the buffered body."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, send, scope["headers"], self.limit)
        if body is None:
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def body_errors(error: ValidationError) -> JSONResponse:
    """The 422 of a request body validated by hand (the version server's and the router's
    fast paths), located as FastAPI locates its own: `["body", "trips", 0, ...]`."""
    return validation_errors([{**e, "loc": ["body", *e["loc"]]} for e in error.errors()])


def validation_errors(errors: Iterable[Mapping[str, Any]]) -> JSONResponse:
    """422 naming each bad field and why, without the input (which may be huge or NaN)."""
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


def harden(app: FastAPI) -> None:
    """Bound the body and keep request input out of error responses."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return validation_errors(error.errors())

    app.add_middleware(BodyLimit, limit=max_body_bytes())
