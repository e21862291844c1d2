"""The one request boundary: route, authenticate, check scope, rate limit, render errors.

The HTTP layer asks `admit` as soon as a request's head is complete, so a request that will be refused
(no route, no key, no permission, over its rate or its route's body limit) is answered before its body
is read. An admitted request is then handled by `__call__` without routing or authenticating again.
A key not seen in the last seconds is looked up through `database.run`, so admission is then `Deferred`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .api import all_routes
from .api._common import Context
from .auth import has_scope
from .coordination import shared
from .http.errors import (
    Forbidden,
    HTTPError,
    InsufficientStorage,
    NotFound,
    RateLimited,
    Unauthorized,
)
from .http.protocol import Deferred
from .http.request import Request
from .http.response import Response
from .http.router import Route, Router
from .ratelimit import RateLimiter, SharedRateLimiter
from .store.errors import StorageFull

if TYPE_CHECKING:
    from .services import Services
    from .store.orgs import ApiKeyRecord

log = logging.getLogger("commune.app")

NOT_OFFERED = ("/v1/sms", "/v1/phone-numbers", "/v1/phone-settings", "/v1/credits", "/v1/feedback",
               "/v1/auth/agent-", "/api/graph", "/v1/x402")


@dataclass(slots=True)
class Admitted:
    """What `admit` decided from the head: the route, the caller, and headers every answer carries."""

    route: Route
    key: ApiKeyRecord | None
    scopes: frozenset[str]
    headers: dict[str, str]


class App:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.router = Router(all_routes())
        rate = services.settings.rate_limit
        # Nodes sharing a database share each key's bucket; one server alone keeps them in memory.
        self.limiter = SharedRateLimiter(rate, services.database) if shared(services.database) \
            else RateLimiter(rate)
        # By id: a frozen dataclass hashes every field on each lookup, and this is on every request.
        self.body_limits = {id(route): route.max_body(services.settings) for route in self.router.routes}

    @property
    def routes(self) -> list[Route]:
        return self.router.routes

    def admit(self, request: Request) -> Response | int | Deferred:
        """From the head alone: the route's body limit if the request may proceed, else its answer; or
        `Deferred` when the key must be looked up in the database first."""
        try:
            admitted = self._admit(request)
            if isinstance(admitted, Route):
                return Deferred(self.body_limits[id(admitted)], self._admit_later(request, admitted))
            if self._limited_later(admitted):
                request.admitted = admitted
                return Deferred(self.body_limits[id(admitted.route)], self._limit_later(admitted))
        except HTTPError as exc:
            return _refusal(exc)
        except Exception:
            log.exception("unexpected error admitting %s %s", request.method, request.path)
            return Response.error("Internal server error", 500)
        request.admitted = admitted
        return self.body_limits[id(admitted.route)]

    async def _admit_later(self, request: Request, route: Route) -> Response | None:
        """Admission once the database knows the key: None to proceed, else the refusal."""
        try:
            found = await self.services.database.run(self.services.keys.authenticate, _token(request))
            request.admitted = self._grant(route, found)
        except HTTPError as exc:
            return _refusal(exc)
        return await self._limit_later(request.admitted) if self._limited_later(request.admitted) else None

    def _limited_later(self, admitted: Admitted) -> bool:
        """Whether the caller's rate limit is still to be checked: a shared bucket is a database call."""
        return admitted.key is not None and self.limiter.shared and self.limiter.enabled

    async def _limit_later(self, admitted: Admitted) -> Response | None:
        """Spend from the key's shared bucket: None to proceed, else the 429."""
        assert admitted.key is not None
        allowed, admitted.headers = await self.services.database.run(self.limiter.take, admitted.key.id)
        return None if allowed else _refusal(RateLimited("Rate limit exceeded", headers=admitted.headers))

    async def __call__(self, request: Request) -> Response:
        admitted: Admitted | None = request.admitted
        if admitted is None:
            verdict = self.admit(request)
            if isinstance(verdict, Deferred):
                verdict = await verdict.decision
            if isinstance(verdict, Response):
                return verdict
            admitted = request.admitted
        try:
            ctx = Context(request=request, services=self.services, key=admitted.key, scopes=admitted.scopes)
            response = _as_response(await admitted.route.handler(ctx))
        except HTTPError as exc:
            response = Response.error(exc.message, exc.status, exc.headers, exc.extra)
        except StorageFull as exc:
            # The store kept nothing of the failed write; the client may retry once space is freed.
            log.error("no storage space left handling %s %s", request.method, request.path)
            response = Response.error(exc.message, InsufficientStorage.status)
        except Exception:
            log.exception("unexpected error handling %s %s", request.method, request.path)
            response = Response.error("Internal server error", 500)
        if admitted.headers:
            for name, value in admitted.headers.items():
                response.headers.setdefault(name, value)
        return response

    def _admit(self, request: Request) -> Admitted | Route:
        """The admission from memory alone, or the route when the key must be looked up first."""
        try:
            route, params = self.router.match(request.method, request.path)
        except NotFound:
            if request.path.startswith(NOT_OFFERED):
                raise NotFound("This endpoint is not offered by this server") from None
            raise
        request.path_params = params
        if route.scope is None:
            return Admitted(route, None, frozenset(), {})
        found = self.services.keys.recall(_token(request))
        if found is ...:
            return route
        return self._grant(route, found)

    def _grant(self, route: Route, found: tuple[ApiKeyRecord, frozenset[str]] | None) -> Admitted:
        """The caller's admission to `route` with the key found (None: unknown or revoked), or the HTTPError."""
        if found is None:
            raise Unauthorized("Invalid or expired API key")
        key, granted = found
        assert route.scope is not None
        if not has_scope(granted, route.scope):
            raise Forbidden(f"This API key lacks the '{route.scope}' permission")
        headers: dict[str, str] = {}
        if self.limiter.enabled and not self.limiter.shared:
            allowed, headers = self.limiter.take(key.id)
            if not allowed:
                raise RateLimited("Rate limit exceeded", headers=headers)
        return Admitted(route, key, granted, headers)


def _token(request: Request) -> str:
    """The bearer token of the request (401 without one)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'")
    return token


def _refusal(exc: HTTPError) -> Response:
    return Response.error(exc.message, exc.status, exc.headers)


def _as_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        status, body = result
        return Response.json(body, status)
    return Response.json(result)
