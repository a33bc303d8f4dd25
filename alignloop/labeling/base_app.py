"""The FastAPI application that the labeling app and the model server both start from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI


def offline_app(title: str, description: str, close: Callable[[], None]) -> FastAPI:
    """An app whose OpenAPI schema is served at ``/openapi.json`` but without Swagger UI or ReDoc: both
    load their assets from a public CDN (a blank page offline, and no CSP could allow it); FastAPI ships
    none. ``close`` runs when the server shuts down."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        close()

    return FastAPI(
        lifespan=lifespan,
        title=title,
        description=description,
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
