"""`GET /`: what a service is and which endpoints it has, for the version servers and the
router alike (a person or a probe finds its way from the root)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute


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
        if app.docs_url:
            endpoints.append({"method": "GET", "path": app.docs_url, "does": "API documentation."})
        return {"service": app.title, **about, "endpoints": endpoints}
