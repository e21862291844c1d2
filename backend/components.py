"""Background parts of the server, started in order after the HTTP listener.

Each entry is `async def start(server) -> None`; it starts its part and registers its own stopper with
`server.on_stop(...)`. Adding a listener or a worker means adding it here, nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import Server

Starter = Callable[["Server"], Awaitable[None]]

ALL: list[Starter] = []

from .relay import start as start_relay

ALL.append(start_relay)  # first: events published while the others start reach the other nodes too

from .webhooks.dispatcher import start as start_webhooks

ALL.append(start_webhooks)

from .dmarc.worker import start as start_dmarc_reports

ALL.append(start_dmarc_reports)

from .delivery.queue import start as start_outbound
from .delivery.scheduler import start as start_outbox
from .smtp.inbound import start as start_smtp

ALL.append(start_smtp)
ALL.append(start_outbound)
ALL.append(start_outbox)

from .retention import start as start_retention

ALL.append(start_retention)
