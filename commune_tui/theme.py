"""Commune's registered themes: one dark, one light, same accents."""

from __future__ import annotations

from textual.theme import Theme

COMMUNE_DARK = Theme(
    name="commune-dark",
    primary="#5FA8D3",
    secondary="#8E7DBE",
    accent="#F2A65A",
    warning="#F2C94C",
    error="#E5484D",
    success="#5BB98C",
    foreground="#E6E9EF",
    background="#14181F",
    surface="#1B2029",
    panel="#232A35",
    dark=True,
    variables={"pane-border": "#444B57"},
)

COMMUNE_LIGHT = Theme(
    name="commune-light",
    primary="#1F6FA3",
    secondary="#6A5AA8",
    accent="#C4661F",
    warning="#A77B00",
    error="#C62A2F",
    success="#2E8B57",
    foreground="#1C2230",
    background="#F7F8FA",
    surface="#FFFFFF",
    panel="#E9EDF2",
    dark=False,
    # Derived shades of the panel colour are white on the white surface: borders need their own.
    variables={"pane-border": "#A9B2BF"},
)

THEMES = (COMMUNE_DARK, COMMUNE_LIGHT)
