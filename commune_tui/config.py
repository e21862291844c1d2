"""Client settings: which server, which key, where data lives, and how the app behaves."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

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

    @property
    def embedded(self) -> bool:
        return not self.base_url

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Environment (`COMMUNE_BASE_URL`, `COMMUNE_API_KEY`, `COMMUNE_DATA_DIR`) under explicit values.

        Key remaps come from `COMMUNE_TUI_KEYMAP` (a TOML file) or the default keymap.toml.
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
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
