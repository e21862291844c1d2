"""What keeps one SMTP client from starving the listener or probing it for addresses.

- Connections: at most `max_connections` sessions in all and `per_client` from one client address, so a
  single address cannot hold every slot. Each address counts on its own, loopback included.
- Commands without progress: a session may send `commands_without_progress` commands that neither
  deliver a message nor add a recipient; the next one is answered `421` and the connection closed.
  The count starts again with every accepted message, so a client delivering mail is never cut off.
- Directory harvesting: after `delay_after_unknown` unknown recipients every further RCPT waits
  `unknown_delay` seconds; once a session has named `max_unknown` of them, RCPT is answered `421`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiosmtpd.smtp import SMTP

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("commune.smtp")

TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
TOO_MANY_FROM_CLIENT = "421 4.7.0 Too many connections from your address"
TOO_MANY_COMMANDS = "421 4.7.0 Too many commands without a delivered message, closing connection"
TOO_MANY_UNKNOWN = "421 4.7.0 Too many unknown recipients"


@dataclass(frozen=True)
class SessionLimits:
    max_connections: int
    per_client: int
    commands_without_progress: int
    delay_after_unknown: int
    max_unknown: int
    unknown_delay: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionLimits:
        if settings.smtp_max_connections_per_client >= settings.max_connections:
            log.warning("SMTP: one client address may hold every one of the %d connections "
                        "(smtp_max_connections_per_client is %d)", settings.max_connections,
                        settings.smtp_max_connections_per_client)
        return cls(
            max_connections=settings.max_connections,
            per_client=settings.smtp_max_connections_per_client,
            commands_without_progress=settings.smtp_max_commands_without_progress,
            delay_after_unknown=settings.smtp_delay_after_unknown_recipients,
            max_unknown=settings.smtp_max_unknown_recipients,
            unknown_delay=settings.smtp_unknown_recipient_delay,
        )


class OpenSessions:
    """The open sessions (what stopping the server closes) and how many each client address holds."""

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self.sessions: set[SMTP] = set()
        self.per_client: Counter[str] = Counter()

    def admit(self, session: SMTP, client: str) -> str | None:
        """Register a new session; the `421` reply instead when it would pass a cap."""
        if len(self.sessions) >= self.limits.max_connections:
            return TOO_MANY_CONNECTIONS
        if self.per_client[client] >= self.limits.per_client:
            return TOO_MANY_FROM_CLIENT
        self.sessions.add(session)
        self.per_client[client] += 1
        return None

    def release(self, session: SMTP, client: str) -> None:
        self.sessions.discard(session)
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]
