"""The outbox: many scheduled messages due at once, and paging through many pending approvals.

The server runs with `--relay` pointing at an aiosmtpd sink in this process (which notes when each
message arrives). Figures:

- the outbound worker's normal rate: messages sent at once, measured at the sink (first to last arrival);
- the release rate: N messages scheduled for the same `send_at`, measured the same way, with how many
  arrived before `send_at` (must be none) and how late the first one arrived after it;
- `GET /v1/approvals` paged 50 at a time through N pending messages (p50/p99 per page), beside
  `GET /v1/messages` paged the same way through the same inbox as a reference.

    python3 bench/outbox_bench.py [--quick] [--messages 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiosmtpd.controller import Controller

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, ServerProcess, free_port, percentile, print_table
from bench.send_bench import EXTERNAL_DOMAIN, ArrivalSink
from tests.dnsserver import TestDNSServer

CLIENTS = 8
PAGE = 50
PAGE_TARGET_MS = 5.0


async def send_many(url: str, key: str, inbox_id: str, tag: str, count: int, expect: int,
                    **extra: object) -> float:
    """`count` sends from CLIENTS concurrent clients, each to its own external recipient; returns sends/s."""
    numbers = iter(range(count))
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        async def worker() -> None:
            for number in numbers:
                response = await client.post("/v1/messages/send", json={
                    "inbox_id": inbox_id, "to": [f"r{number}@{EXTERNAL_DOMAIN}"], "subject": f"bench-{tag}-{number}",
                    "text": f"Outbox benchmark message {number}.\n" * 10, **extra})
                if response.status_code != expect:
                    raise RuntimeError(f"send answered {response.status_code}: {response.text}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return count / (time.perf_counter() - began)


def arrivals(sink: ArrivalSink, tag: str, count: int, timeout: float) -> list[float]:
    """Arrival times (perf_counter) of one tag's messages, once all arrived or the wait gave up."""
    prefix = f"bench-{tag}-"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sink.lock:
            found = [at for subject, at in sink.arrived.items() if subject.startswith(prefix)]
        if len(found) >= count:
            break
        time.sleep(0.05)
    return sorted(found)


def rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def page_times(api: httpx.Client, path: str, params: dict) -> tuple[list[float], int]:
    """Seconds per page following `next_cursor` to the end, and the rows seen."""
    times, seen, cursor = [], 0, None
    while True:
        began = time.perf_counter()
        response = api.get(path, params={**params, "limit": PAGE, **({"cursor": cursor} if cursor else {})})
        times.append(time.perf_counter() - began)
        body = response.json()
        seen += len(body["data"])
        cursor = body.get("next_cursor")
        if not cursor:
            return times, seen


def run(quick: bool = False, messages: int | None = None) -> list[Figure]:
    count = messages or (1000 if quick else 10_000)
    sink = ArrivalSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    dns = TestDNSServer().start()
    dns.publish(EXTERNAL_DOMAIN, "MX", f"10 mx.{EXTERNAL_DOMAIN}.")
    figures: list[Figure] = []
    try:
        with tempfile.TemporaryDirectory(prefix="commune-outbox-bench-") as tmp:
            data_dir = Path(tmp)
            server = ServerProcess(data_dir, "--relay", f"127.0.0.1:{controller.port}", "--dns-servers", dns.address)
            with server.start():
                key = (data_dir / "admin.key").read_text().strip()
                with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
                    sender = api.post("/v1/inboxes", json={"local_part": "sender"}).json()["data"]
                    held = api.post("/v1/inboxes", json={"local_part": "held"}).json()["data"]
                    api.patch(f"/v1/inboxes/{held['id']}", json={"approval": "all"})
                    agent = api.post("/v1/agent/api-keys", json={"name": "agent"}).json()["data"]["key"]
                figures += _release(server.url, key, sender["id"], sink, count)
                figures += _paging(server.url, key, agent, held["id"], count)
    finally:
        dns.stop()
        controller.stop()
    return figures


def _release(url: str, key: str, inbox_id: str, sink: ArrivalSink, count: int) -> list[Figure]:
    """Direct sends (the normal rate), then `count` scheduled for one `send_at`."""
    normal = max(200, count // 10)
    asyncio.run(send_many(url, key, inbox_id, "now", normal, 200))
    sent = arrivals(sink, "now", normal, 120)
    # Due once every one is scheduled: the rate of scheduling (measured on messages due in 29 days, which
    # stay behind), with room to spare.
    far = datetime.fromtimestamp(time.time() + 29 * 86400, UTC).isoformat()
    submit_rate = asyncio.run(send_many(url, key, inbox_id, "far", 200, 202, send_at=far))
    send_at = time.time() + count / submit_rate * 1.25 + 3
    at_perf = send_at - time.time() + time.perf_counter()
    asyncio.run(send_many(url, key, inbox_id, "later", count, 202,
                          send_at=datetime.fromtimestamp(send_at, UTC).isoformat()))
    scheduled_by = time.perf_counter()
    released = arrivals(sink, "later", count, max(120.0, send_at - time.time() + count / 20))
    early = sum(1 for at in released if at < at_perf)
    late = released[0] - at_perf if released else float("nan")
    return [
        Figure(f"outbound rate, {normal} sent at once", f"{rate(sent):,.0f} msg/s ({len(sent)} arrived)"),
        Figure(f"outbound rate, {count} scheduled due at once",
               f"{rate(released):,.0f} msg/s ({len(released)} arrived; scheduled"
               f" {at_perf - scheduled_by:.1f} s before send_at)",
               "the normal rate", bool(released) and rate(released) >= 0.8 * rate(sent)),
        Figure("scheduled messages arriving before send_at", str(early), "0", early == 0),
        Figure("first scheduled arrival after send_at", f"{late * 1000:.0f} ms", "< 1000 ms", late < 1.0),
    ]


def _paging(url: str, key: str, agent: str, inbox_id: str, count: int) -> list[Figure]:
    """`count` messages held for approval, then both lists paged to the end."""
    asyncio.run(send_many(url, agent, inbox_id, "held", count, 202))
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as api:
        page_times(api, "/v1/approvals", {"inbox_id": inbox_id})  # warm the cache
        approvals, seen = page_times(api, "/v1/approvals", {"inbox_id": inbox_id})
        messages, listed = page_times(api, "/v1/messages", {"inbox_id": inbox_id})
    p50, p99 = percentile(approvals, 0.5) * 1000, percentile(approvals, 0.99) * 1000
    return [
        Figure(f"GET /v1/approvals, {seen} pending, {PAGE} per page",
               f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(approvals)} pages)",
               f"< {PAGE_TARGET_MS:.0f} ms per page", p99 < PAGE_TARGET_MS),
        Figure(f"GET /v1/messages (reference), {listed} messages, {PAGE} per page",
               f"p50 {percentile(messages, 0.5) * 1000:.2f} ms, p99 {percentile(messages, 0.99) * 1000:.2f} ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 000 messages instead of 10 000")
    parser.add_argument("--messages", type=int, help="scheduled and pending messages (default 10 000)")
    args = parser.parse_args(argv)
    print_table(run(args.quick, args.messages), "Outbox")
    return 0


if __name__ == "__main__":
    sys.exit(main())
