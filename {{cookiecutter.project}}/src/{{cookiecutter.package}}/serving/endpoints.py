"""What the version servers and the router share about endpoints: `GET /` (what a service
is and which endpoints it has: a person or a probe finds its way from the root), and a
prediction endpoint answered before FastAPI's routing (`DirectRoute`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from {{ cookiecutter.package }}.serving.limits import max_body_bytes, read_body


def add_index(app: FastAPI, **about: Any) -> None:
    """Serve `GET /`: `service`, the fields of `about`, and every endpoint with the first
    line of its docstring."""

    @app.get("/")
    def index() -> dict[str, Any]:
        """This list: the service and its endpoints."""
        endpoints = [
            {"method": method, "path": route.path, "does": route.description.splitlines()[0]}
            for route in app.routes
            if isinstance(route, APIRoute) and route.include_in_schema
            for method in sorted(route.methods or ())
        ]
        if any(isinstance(r, APIRoute) and r.path == "/metrics" for r in app.routes):
            # Out of the OpenAPI schema (it is no API), but an endpoint operators look for.
            endpoints.append(
                {"method": "GET", "path": "/metrics", "does": "Prometheus metrics (text)."}
            )
        if app.docs_url:
            endpoints.append({"method": "GET", "path": app.docs_url, "does": "API documentation."})
        return {"service": app.title, **about, "endpoints": endpoints}


class DirectRoute:
    """ASGI middleware: `POST path` answered by `answer(body)` before FastAPI's routing.

    For a prediction endpoint, whose request is a few trips: FastAPI's routing, dependency
    solving and request objects cost more than the prediction itself. The route is still
    declared with FastAPI, so the OpenAPI docs and `GET /` show it. The body is read within
    the same limit as every other request's (`limits.read_body`); an HTTPException raised by
    `answer` gets the answer FastAPI would give it, and any other error is a 500.
    `in_flight()` is held from the request's arrival to its answer (the micro-batcher counts
    the requests in the server with it); `observe(status, seconds)`, when given, is told
    each answer's status and the seconds from arrival to answer (`serving.metrics`).
    """

    def __init__(
        self,
        app: Any,
        path: str,
        answer: Callable[[bytes], Awaitable[Response]],
        limit: int,
        in_flight: Callable[[], AbstractContextManager[Any]] = nullcontext,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self.app, self.path, self.answer = app, path, answer
        self.limit, self.in_flight, self.observe = limit, in_flight, observe

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # a request whose answer never starts counts as failed
        try:
            with self.in_flight():
                body = await read_body(receive, send, scope["headers"], self.limit)
                if body is None:  # refused (413) or the client left
                    status = 413
                    return
                try:
                    response = await self.answer(body)
                except HTTPException as error:
                    response = JSONResponse(
                        {"detail": error.detail},
                        status_code=error.status_code,
                        headers=error.headers,
                    )
            status = response.status_code
            await response(scope, receive, send)
        finally:
            if self.observe is not None:
                self.observe(status, time.perf_counter() - started)


def add_direct_post(
    app: FastAPI,
    path: str,
    answer: Callable[[bytes], Awaitable[Response]],
    description: str,
    in_flight: Callable[[], AbstractContextManager[Any]] = nullcontext,
    observe: Callable[[int, float], None] | None = None,
    **route: Any,
) -> None:
    """`POST path` answered by `answer(body)`: declared with FastAPI (the docs and `GET /`
    show it, with `description` and `route`'s schema options) and answered by `DirectRoute`
    before FastAPI's routing. Added last, so outermost: a request is in flight from its
    arrival."""

    async def endpoint(request: Request) -> Response:
        return await answer(await request.body())

    route.setdefault("name", "predict")  # the docs' summary ("Predict"), not "Endpoint"
    app.add_api_route(path, endpoint, methods=["POST"], description=description, **route)
    app.add_middleware(
        DirectRoute,
        path=path,
        answer=answer,
        limit=max_body_bytes(),
        in_flight=in_flight,
        observe=observe,
    )


def add_metrics(app: FastAPI, registry: Any) -> None:
    """Serve `GET /metrics`: the registry in Prometheus's text format."""
    from {{ cookiecutter.package }}.serving.metrics import exposition

    # On the event loop's thread, where the metrics are updated: one consistent state.
    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = exposition(registry)
        return Response(body, media_type=content_type)
