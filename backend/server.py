"""`Server`: one object that owns the HTTP listener, the SMTP listener and the background workers.

Like aiosmtpd's Controller: `await server.start()` (ports may be 0 for tests), `.port`, `.smtp_port`,
`await server.stop()`. `ServerThread` runs one in a background thread with its own event loop, which is
how the tests, the terminal client's embedded mode and the screenshot script use it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

from .app import App
from .config import Settings
from .datalock import DataDirLock
from .http.protocol import ConnectionLimits, HttpServerState
from .listeners import Listeners
from .services import Services, prepare_data_dir

log = logging.getLogger("commune.server")


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Ports first: a port in use (`PortInUse`) must stop us before the data directory is created.
        self.listeners = Listeners.bind(settings)
        self.data_lock = DataDirLock(settings.data_dir)
        try:
            prepare_data_dir(settings.data_dir)
            self.data_lock.acquire()  # `DataDirInUse` when another server runs on this directory
            self.services = Services(settings)
            self.services.bootstrap()
        except BaseException:
            self.data_lock.release()
            self.listeners.close()
            raise
        self.app = App(self.services)
        self.port: int | None = None
        self.smtp_port: int | None = None
        self._http_state: HttpServerState | None = None
        self._components: list[object] = []
        self._stoppers: list[Callable[[], Awaitable[None]]] = []

    @property
    def base_url(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def admin_key(self) -> str:
        assert self.services.admin_key is not None
        return self.services.admin_key

    def on_stop(self, stopper: Callable[[], Awaitable[None]]) -> None:
        """Register a coroutine function run (in reverse order) when the server stops."""
        self._stoppers.append(stopper)

    async def start(self) -> None:
        s = self.settings
        limits = ConnectionLimits(
            max_body=s.max_body_bytes,
            header_timeout=s.header_timeout,
            idle_timeout=s.idle_timeout,
            body_timeout=s.body_timeout,
        )
        spool_dir = s.data_dir / "spool"
        spool_dir.mkdir(mode=0o700, exist_ok=True)
        self._http_state = HttpServerState(self.app, limits, s.max_connections, s.max_connections_per_client,
                                           admit=self.app.admit, spool_dir=spool_dir)
        await self.listeners.http.serve(self._http_state.factory)
        self.port = self.listeners.http.port
        log.info("HTTP listening on %s", self.base_url)
        await self._start_services()
        smtp_port = self.listeners.smtp.port if self.listeners.smtp is not None else None
        self.data_lock.publish(self.base_url, smtp_port)

    async def _start_services(self) -> None:
        """Start the mail listener and workers that exist in this build (each module registers itself)."""
        from . import components

        for component in components.ALL:
            await component(self)

    async def stop(self) -> None:
        self.services.events.close()
        self.listeners.http.close()
        if self._http_state is not None:
            await self._http_state.shutdown()
        for stopper in reversed(self._stoppers):
            try:
                await stopper()
            except Exception:
                log.exception("error while stopping a component")
        self._stoppers.clear()
        await self.services.commit.drain()
        self.services.release_leases()
        await self.listeners.http.wait_closed()
        self.listeners.close()
        self.services.close()
        self.data_lock.release()


class ServerThread:
    """Runs a Server on its own event loop in a daemon thread; `start()` returns once it listens."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 30.0) -> Server:
        self._thread = threading.Thread(target=self._run, name="commune-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("server did not start in time")
        if self._error is not None:
            raise RuntimeError("server failed to start") from self._error
        assert self.server is not None
        return self.server

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.server = Server(self.settings)
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.server.stop()

    def call(self, coro: Awaitable) -> object:
        """Run a coroutine on the server's loop from another thread and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def stop(self, timeout: float = 30.0) -> None:
        if self.loop is not None and self._stop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
