"""API handlers, one module per resource; each exports `ROUTES`, collected here."""

from __future__ import annotations

import importlib
import pkgutil

from ..http.router import Route


def all_routes() -> list[Route]:
    routes: list[Route] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        routes.extend(getattr(module, "ROUTES", []))
    return routes
