"""The bundled server: started on loopback when no server is configured, seeded on the first run."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .client import ApiError, CommuneClient

if TYPE_CHECKING:
    from backend.server import ServerThread

DEFAULT_SMTP_PORT = 2525
USER_LOCAL_PART = "me"
WELCOME_LOCAL_PART = "welcome"

WELCOME_TEXT = """\
Welcome to Commune!

This message came in through your own server, like any other mail.

  j/k or arrows   move            enter   open a thread
  tab             next pane       r / R   reply / reply all
  c               compose         f       forward
  /               search          ?       all keys
  ctrl+p          command palette q       back / quit

Domains (ctrl+d) is where you add your own domain, see the DNS records to publish
and create more inboxes. Mail to any inbox here arrives over SMTP on this server.
"""


@dataclass
class EmbeddedServer:
    """A running bundled server and how to reach it; `thread` is None when the server is another
    process (`commune-server serve` on the same data dir), which this client must leave running."""

    thread: ServerThread | None
    base_url: str
    api_key: str
    smtp_port: int

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()


def find_running(data_dir: Path) -> EmbeddedServer | None:
    """The server already running on `data_dir` (found through its lock file), with its admin key."""
    from backend.datalock import running_server

    running = running_server(data_dir)
    key_path = data_dir / "admin.key"
    if running is None or not key_path.is_file():
        return None
    return EmbeddedServer(None, running.base_url, key_path.read_text().strip(), running.smtp_port or 0)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def start_embedded(data_dir: Path) -> EmbeddedServer:
    """Connect to the server running on `data_dir`, or start the bundled server in a background
    thread, HTTP on a free loopback port."""
    running = find_running(data_dir)
    if running is not None:
        return running
    # Imported here: a client pointed at a remote server never needs the server's modules.
    from backend.config import Settings as ServerSettings
    from backend.server import ServerThread
    from backend.services import prepare_data_dir

    # The app is about to take over the terminal, so the server logs to a file in its data dir; the
    # dir is 0700 and the log 0600 whatever the umask, like everything else the server writes.
    prepare_data_dir(data_dir)
    log_path = data_dir / "server.log"
    os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    log_path.chmod(0o600)
    server_log = logging.getLogger("commune")
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    server_log.propagate = False
    smtp_port = DEFAULT_SMTP_PORT if port_is_free(DEFAULT_SMTP_PORT) else 0
    # One local user runs this server, so webhooks to their own machine are expected; the
    # environment can still turn that off.
    allow_private = None if os.environ.get("COMMUNE_WEBHOOK_ALLOW_PRIVATE") else True
    settings = ServerSettings.load({"data_dir": data_dir, "host": "127.0.0.1", "port": 0,
                                    "smtp_port": smtp_port, "webhook_allow_private": allow_private})
    if settings.webhook_allow_private:
        server_log.info("Embedded server: webhooks may reach loopback and private addresses "
                        "(COMMUNE_WEBHOOK_ALLOW_PRIVATE=false refuses them)")
    thread = ServerThread(settings)
    server = thread.start()
    return EmbeddedServer(thread, server.base_url, server.admin_key, server.smtp_port or 0)


async def first_run(client: CommuneClient) -> bool:
    """On an empty server: the user's inbox and a welcome mail sent to it. True if it seeded."""
    if await client.list_inboxes():
        return False
    me = await client.create_inbox(USER_LOCAL_PART, name="Me")
    welcome = await client.create_inbox(WELCOME_LOCAL_PART, name="Commune")
    try:
        await client.send(inbox_id=welcome.id, to=[me.address], subject="Welcome to Commune",
                          text=WELCOME_TEXT)
    except ApiError as exc:
        if exc.status != 404:  # a server without sending still gets its inbox
            raise
    return True
