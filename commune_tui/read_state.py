"""Which threads the user has read, kept on disk per server (the API has no read flag to set)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MAX_ENTRIES = 20_000


class ReadState:
    """Thread id → the `last_message_at` the user saw; newer mail makes a thread unread again."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.seen: dict[str, str] = {}
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError):
                loaded = {}
            if isinstance(loaded, dict):
                self.seen = {str(k): str(v) for k, v in loaded.items()}

    @classmethod
    def for_server(cls, folder: Path, base_url: str) -> ReadState:
        digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
        return cls(folder / f"read-{digest}.json")

    def is_read(self, thread_id: str, last_message_at: str) -> bool:
        return self.seen.get(thread_id, "") >= last_message_at

    def mark(self, thread_id: str, last_message_at: str) -> None:
        """Remember the thread as read up to `last_message_at` and save (oldest entries drop first)."""
        self.seen[thread_id] = max(self.seen.get(thread_id, ""), last_message_at)
        if len(self.seen) > MAX_ENTRIES:
            keep = sorted(self.seen.items(), key=lambda item: item[1])[-MAX_ENTRIES:]
            self.seen = dict(keep)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(self.seen))
            except OSError:
                pass  # read marks are a convenience; never fail reading mail over them
