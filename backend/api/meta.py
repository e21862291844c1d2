"""Server health; public, so load balancers and the terminal client can probe it without a key."""

from __future__ import annotations

from .. import __version__
from ..http.router import Route
from ._common import Context


async def health(ctx: Context) -> dict:
    return {"status": "ok", "version": __version__}


ROUTES = [
    Route("GET", "/health", health, None, "Liveness probe"),
    Route("GET", "/v1/health", health, None, "Liveness probe"),
]
