"""Route tables: `(method, template, handler, scope)` rows compiled into a dispatch map."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .errors import MethodNotAllowed, NotFound

PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
JSON_BODY_LIMIT = 1024 * 1024

BodyLimit = int | Callable[[Any], int]
"""Bytes of body a route accepts: a number, or a function of the server settings for operator-set limits."""


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Callable[..., Awaitable[Any]]
    scope: str | None
    """Scope the caller's key needs; `None` means the route is public (no key at all)."""
    summary: str = ""
    body_limit: BodyLimit = JSON_BODY_LIMIT
    """Checked against `Content-Length` before the body is read, and again as it arrives."""

    def max_body(self, settings: Any) -> int:
        return self.body_limit(settings) if callable(self.body_limit) else self.body_limit

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.template)


def _compile(template: str) -> re.Pattern[str]:
    pattern = PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", template)
    return re.compile(f"^{pattern}$")


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._static: dict[str, dict[str, Route]] = {}
        self._dynamic: list[tuple[re.Pattern[str], dict[str, Route]]] = []
        dynamic_index: dict[str, dict[str, Route]] = {}
        for route in routes:
            if "{" in route.template:
                if route.template not in dynamic_index:
                    dynamic_index[route.template] = {}
                    self._dynamic.append((_compile(route.template), dynamic_index[route.template]))
                table = dynamic_index[route.template]
            else:
                table = self._static.setdefault(route.template, {})
            if route.method in table:
                raise ValueError(f"duplicate route {route.method} {route.template}")
            table[route.method] = route

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route and path parameters for a request; NotFound or MethodNotAllowed otherwise."""
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        methods = self._static.get(path)
        params: dict[str, str] = {}
        if methods is None:
            for pattern, table in self._dynamic:
                found = pattern.match(path)
                if found:
                    methods, params = table, found.groupdict()
                    break
        if methods is None:
            raise NotFound(f"No route for {path}")
        route = methods.get(method) or (methods.get("GET") if method == "HEAD" else None)
        if route is None:
            allowed = ", ".join(sorted(methods))
            raise MethodNotAllowed(f"Method {method} not allowed for {path}", headers={"allow": allowed})
        return route, params
