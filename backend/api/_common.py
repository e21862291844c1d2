"""Helpers shared by the resource modules: the handler context, body validation, paging arguments."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from pydantic import BaseModel, ValidationError

from ..http.errors import BadRequest
from ..http.request import Request
from ..store.orgs import ApiKeyRecord

if TYPE_CHECKING:
    from ..services import Services

M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Context:
    """What a handler gets: the request, the caller (org and key) and the services."""

    request: Request
    services: Services
    key: ApiKeyRecord | None
    scopes: frozenset[str]

    @property
    def org_id(self) -> str:
        assert self.key is not None
        return self.key.org_id

    @property
    def params(self) -> dict[str, str]:
        return self.request.path_params

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Store work through `database.run`: a direct call on SQLite, a worker thread on PostgreSQL."""
        return await self.services.database.run(fn, *args, **kwargs)


def store_work(handler: Callable[[Context], T]) -> Callable[[Context], Awaitable[T]]:
    """A handler whose work is all store work, written as a plain function and run through
    `database.run` as a whole: one hop off the event loop per request, not one per query."""

    @functools.wraps(handler)
    async def run(ctx: Context) -> T:
        return await ctx.services.database.run(handler, ctx)

    return run


def describe_validation_error(exc: ValidationError) -> str:
    """One readable sentence naming the fields at fault."""
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__")
        message = error.get("msg", "is invalid")
        message = message.removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "Invalid request: " + "; ".join(parts)


def parse_body(request: Request, model: type[M]) -> M:
    data = request.json_object()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from exc


def int_arg(request: Request, name: str, default: int, low: int, high: int, *aliases: str) -> int:
    raw = request.arg(name, *aliases)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} must be an integer") from exc
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


def order_arg(request: Request, default: str) -> str:
    value = request.arg("order") or default
    if value not in ("asc", "desc"):
        raise BadRequest("order must be 'asc' or 'desc'")
    return value


def data(value: Any, **outside: Any) -> dict[str, Any]:
    """The `data` envelope; `outside` repeats a few fields beside it for clients that read them at the top
    level (the official CLI's confirmation lines)."""
    return {"data": value, **outside}
