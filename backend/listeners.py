"""The server's ports, bound before anything touches the data directory.

A port that is already taken must stop `serve` before it creates a data directory or an admin key, and
it must still be ours when the server starts listening: so the sockets are bound first, held while the
server bootstraps, and served on as they are.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass

from .config import Settings

BACKLOG = 1024


class PortInUse(Exception):
    """Another program listens on the port; the message names the flag that picks another one."""

    def __init__(self, port: int, flag: str) -> None:
        super().__init__(f"port {port} is in use; choose another with {flag}")
        self.port = port
        self.flag = flag


class Listener:
    """One port on every address the host resolves to (as `loop.create_server` would bind it)."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets = sockets
        self._servers: list[asyncio.Server] = []

    @classmethod
    def bind(cls, host: str, port: int, flag: str) -> Listener:
        """Bind and listen now; `PortInUse` names `flag` when another program holds the port."""
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(address)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise PortInUse(port, flag) from None
                    raise
                sock.listen(BACKLOG)
                sock.setblocking(False)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return cls(sockets)

    @property
    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    async def serve(self, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        """Start accepting connections on the bound sockets, one protocol from `factory` each."""
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            self._servers.append(await loop.create_server(factory, sock=sock, backlog=BACKLOG))

    def close(self) -> None:
        """Stop accepting; sockets never served are closed here too."""
        for server in self._servers:
            server.close()
        for sock in self.sockets:
            sock.close()

    async def wait_closed(self) -> None:
        for server in self._servers:
            await server.wait_closed()


@dataclass
class Listeners:
    """The HTTP port and, when SMTP is on, the SMTP port."""

    http: Listener
    smtp: Listener | None

    @classmethod
    def bind(cls, settings: Settings) -> Listeners:
        http = Listener.bind(settings.host, settings.port, "--port")
        try:
            smtp = None
            if settings.smtp_enabled:
                smtp = Listener.bind(settings.host, settings.smtp_port, "--smtp-port")
        except BaseException:
            http.close()
            raise
        return cls(http, smtp)

    def close(self) -> None:
        self.http.close()
        if self.smtp is not None:
            self.smtp.close()
