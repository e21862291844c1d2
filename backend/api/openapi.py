"""`GET /v1/openapi.json`: the API described as OpenAPI 3.1, public like the health probe."""

from __future__ import annotations

from functools import cache
from typing import Any

from ..http.router import Route
from ..openapi import build_document
from ._common import Context


@cache
def _document() -> dict[str, Any]:
    # Built from the same route table the app dispatches on; the table is fixed at import time.
    from . import all_routes

    return build_document(all_routes())


async def openapi_document(ctx: Context) -> dict[str, Any]:
    return _document()


ROUTES = [
    Route("GET", "/v1/openapi.json", openapi_document, None, "This API as an OpenAPI 3.1 document"),
]
