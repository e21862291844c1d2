"""The one request boundary: route, authenticate, check scope, rate limit, render errors."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .api import all_routes
from .api._common import Context
from .auth import has_scope
from .http.errors import (
    Forbidden,
    HTTPError,
    InsufficientStorage,
    NotFound,
    RateLimited,
    Unauthorized,
)
from .http.request import Request
from .http.response import Response
from .http.router import Router
from .ratelimit import RateLimiter
from .store.errors import StorageFull

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("commune.app")

NOT_OFFERED = ("/v1/sms", "/v1/phone-numbers", "/v1/phone-settings", "/v1/credits", "/v1/feedback",
               "/v1/auth/agent-", "/api/graph", "/v1/x402")


class App:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.router = Router(all_routes())
        self.limiter = RateLimiter(services.settings.rate_limit)

    @property
    def routes(self):
        return self.router.routes

    async def __call__(self, request: Request) -> Response:
        headers: dict[str, str] = {}
        try:
            response = await self._dispatch(request, headers)
        except HTTPError as exc:
            response = Response.error(exc.message, exc.status, exc.headers)
        except StorageFull as exc:
            # The store kept nothing of the failed write; the client may retry once space is freed.
            log.error("no storage space left handling %s %s", request.method, request.path)
            response = Response.error(exc.message, InsufficientStorage.status)
        except Exception:
            log.exception("unexpected error handling %s %s", request.method, request.path)
            response = Response.error("Internal server error", 500)
        if headers:
            for name, value in headers.items():
                response.headers.setdefault(name, value)
        return response

    async def _dispatch(self, request: Request, headers: dict[str, str]) -> Response:
        try:
            route, params = self.router.match(request.method, request.path)
        except NotFound:
            if request.path.startswith(NOT_OFFERED):
                raise NotFound("This endpoint is not offered by this server") from None
            raise
        request.path_params = params
        key, granted = None, frozenset()
        if route.scope is not None:
            key, granted = self._authenticate(request)
            if not has_scope(granted, route.scope):
                raise Forbidden(f"This API key lacks the '{route.scope}' permission")
            if self.limiter.enabled:
                allowed, limit_headers = self.limiter.take(key.id)
                headers.update(limit_headers)
                if not allowed:
                    raise RateLimited("Rate limit exceeded", headers=limit_headers)
        ctx = Context(request=request, services=self.services, key=key, scopes=granted)
        return _as_response(await route.handler(ctx))

    def _authenticate(self, request: Request):
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'")
        found = self.services.keys.authenticate(token)
        if found is None:
            raise Unauthorized("Invalid or expired API key")
        return found


def _as_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        status, body = result
        return Response.json(body, status)
    return Response.json(result)
