"""Client settings: which server, which key, where data lives, and how the app behaves."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("commune", appauthor=False))


def default_downloads_dir() -> Path:
    downloads = Path.home() / "Downloads"
    return downloads if downloads.is_dir() else Path.cwd()


def default_state_dir() -> Path:
    return Path(platformdirs.user_state_dir("commune-tui", appauthor=False))


def default_keymap_path() -> Path:
    return Path(platformdirs.user_config_dir("commune-tui", appauthor=False)) / "keymap.toml"


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("commune-tui", appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class ServerProfile:
    """One server and key from the config file's `[[servers]]`; `S` switches between them."""

    name: str
    url: str | None
    api_key: str | None


def load_config(path: Path) -> dict[str, Any]:
    """The config file's values: `signature`, `theme`, `timezone` and `[[servers]]` (missing: `{}`)."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read the config file {path}: {exc}") from exc
    values: dict[str, Any] = {}
    if isinstance(table.get("signature"), str):
        values["signature"] = table["signature"]
    if table.get("theme") in ("commune-dark", "commune-light"):
        values["theme"] = table["theme"]
    if isinstance(table.get("timezone"), str):
        try:
            values["timezone"] = ZoneInfo(table["timezone"])
        except (ValueError, ZoneInfoNotFoundError) as exc:
            raise ValueError(f"{path}: unknown timezone {table['timezone']!r}") from exc
    servers = []
    for number, entry in enumerate(table.get("servers") or [], 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ValueError(f"{path}: servers entry {number} needs a url")
        servers.append(ServerProfile(str(entry.get("name") or entry["url"]), entry["url"],
                                     str(entry.get("api_key") or "") or None))
    if servers:
        values["servers"] = servers
    return values


def load_keymap(path: Path) -> dict[str, str]:
    """Binding id → keys from a TOML file's `[keys]` table, e.g. `"threads.reply" = "ctrl+r"`."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle).get("keys", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read the keymap {path}: {exc}") from exc
    return {str(k): str(v) for k, v in table.items() if isinstance(v, str)}


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Settings:
    """Everything `make_app` needs; tests and the screenshot script freeze the clock and polling."""

    base_url: str | None = None
    api_key: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    downloads_dir: Path = field(default_factory=default_downloads_dir)
    state_dir: Path = field(default_factory=default_state_dir)
    theme: str = "commune-dark"
    keymap: dict[str, str] = field(default_factory=dict)
    poll_interval: float = 3.0
    use_event_stream: bool = True
    live_updates: bool = True
    page_size: int = 50
    cursor_blink: bool = True
    clock: Callable[[], datetime] = utc_now
    timezone: tzinfo | None = None
    """Dates are shown in this zone; None is the local time zone (`TZ`)."""
    signature: str = ""
    """Appended to new messages, replies and forwards under `-- `."""
    servers: list[ServerProfile] = field(default_factory=list)

    @property
    def embedded(self) -> bool:
        return not self.base_url

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Environment (`COMMUNE_BASE_URL`, `COMMUNE_API_KEY`, `COMMUNE_DATA_DIR`) under explicit values.

        Key remaps come from `COMMUNE_TUI_KEYMAP` (a TOML file) or the default keymap.toml; the
        signature, theme, time zone and servers from `COMMUNE_TUI_CONFIG` or the default config.toml.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "base_url": env.get("COMMUNE_BASE_URL") or None,
            "api_key": env.get("COMMUNE_API_KEY") or None,
        }
        if env.get("COMMUNE_DATA_DIR"):
            values["data_dir"] = Path(env["COMMUNE_DATA_DIR"]).expanduser()
        keymap = env.get("COMMUNE_TUI_KEYMAP")
        values["keymap"] = load_keymap(Path(keymap) if keymap else default_keymap_path())
        config = env.get("COMMUNE_TUI_CONFIG")
        values.update(load_config(Path(config) if config else default_config_path()))
        values.update({k: v for k, v in overrides.items() if v is not None})
        servers = values.get("servers")
        if not values.get("base_url") and isinstance(servers, list) and servers:
            values["base_url"], values["api_key"] = servers[0].url, values.get("api_key") or servers[0].api_key
        return cls(**values)  # type: ignore[arg-type]
