"""The benchmark's bulk seeding path writes a mailbox the real server serves: rows, threads, search."""

from __future__ import annotations

from pathlib import Path

import httpx

from bench.seed import Seeded, seed
from tests.conftest import start_server


def test_seeded_mailbox_is_served_by_the_api(tmp_path: Path, dns_server) -> None:
    info = seed(tmp_path, 400, per_thread=4)
    assert Seeded.load(tmp_path) == info
    running = start_server(tmp_path, dns_server)
    try:
        with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {info.key}"}) as api:
            first = api.get("/v1/threads", params={"inbox_id": info.inbox_id, "limit": 50}).json()
            assert [t["thread_id"] for t in first["data"][:1]] == [info.first_thread_id]
            assert first["has_more"] is True
            assert all(t["message_count"] == 4 for t in first["data"])
            messages = api.get(f"/v1/threads/{info.middle_thread_id}/messages").json()["data"]
            assert len(messages) == 4
            rare = api.get("/v1/search/threads", params={"q": info.rare_word}).json()["data"]
            assert 1 <= len(rare) <= 5
            common = api.get("/v1/search/threads", params={"q": info.common_word, "limit": 100}).json()["data"]
            assert len(common) == 90  # nine threads in ten carry the common word
    finally:
        running.stop()
