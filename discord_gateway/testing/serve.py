"""The local gateway on a real socket: asyncio, 127.0.0.1, ``ws://`` or ``wss://``.

The loop per connection is thin on purpose (house style 5): read bytes, feed
``GatewayServer``, write what it returns, wait until its next deadline or until
a test pushes something (``SessionStore.on_output``). Everything that decides
what to send lives in :mod:`.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from . import control as _control  # issue 16 hook: REST and the control API
from .faults import ConnectionFaults, Fault
from .profiles import Deviations, deviations_profile
from .rest import RestApi
from .server import ConnectionState, GatewayServer, ServerConfig, SessionStore

__all__ = ("LocalGateway", "TLSContexts", "serve", "tls_contexts")

logger = logging.getLogger("discord_gateway.testing")

FaultsFor = Sequence[ConnectionFaults] | Callable[[int], ConnectionFaults | None]


@dataclass(frozen=True, slots=True)
class TLSContexts:
    """A throwaway CA (trustme) and a certificate for 127.0.0.1/localhost."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    ca_pem: bytes


def tls_contexts() -> TLSContexts:
    """Server and client ``SSLContext``s for ``wss://127.0.0.1`` (needs the ``test`` extra)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return TLSContexts(server, client, ca.cert_pem.bytes())


class LocalGateway:
    """A running (or startable) local gateway. Use ``async with serve(...) as gateway``.

    ``url`` is the ``ws://`` (or ``wss://``) URL to connect to, ``token`` a token
    it accepts, ``store`` the :class:`SessionStore` (sessions, connections) and
    ``connections`` every :class:`GatewayServer` so far, in order.
    ``faults`` says how connection ``n`` (1-based) misbehaves: a sequence
    (connection n gets item n-1; later connections behave) or a function.
    ``deviations`` is how the whole server departs from Discord: a
    :class:`~.profiles.Deviations` or the name of a preset in ``PROFILES``.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        seed: int | str = 0,
        faults: FaultsFor | None = None,
        deviations: Deviations | str | None = None,
    ) -> None:
        if isinstance(deviations, str):
            deviations = deviations_profile(deviations)
        self.store = SessionStore(config, seed=seed, deviations=deviations)
        self.store.on_output = self._wake
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._faults = faults
        self._server: asyncio.Server | None = None
        self._wakers: dict[GatewayServer, asyncio.Event] = {}
        self._transports: dict[GatewayServer, asyncio.WriteTransport] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None
        self._store_timer: asyncio.TimerHandle | None = None
        self._reading_head: set[asyncio.WriteTransport] = set()
        self._accept_errors = 0
        self._previous_handler: Any = None
        # issue 16 hook: REST routes (requests recorded) and the world they share
        self.rest = RestApi(self.store)
        self.world = self.store.world

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> LocalGateway:
        self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Out of fds (EMFILE), asyncio stops accepting for a second and reports
        # it with a traceback each time: we log it once, as a warning.
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, ssl=self.ssl_context
        )
        self._arm_store_timer()
        self.port = self._server.sockets[0].getsockname()[1]
        config = self.store.config
        self.store.config = dataclasses.replace(
            config, url=self.url, resume_gateway_url=config.resume_gateway_url or self.url
        )
        logger.info("local gateway listening on %s", self.url)
        return self

    async def close(self) -> None:
        if self._store_timer is not None:
            self._store_timer.cancel()
            self._store_timer = None
        if self._server is not None:
            self._server.close()
        # Drop every live connection and let its loop end by itself. Cancelling
        # the handler tasks instead makes asyncio (3.11, 3.12 < 3.12.2) log
        # "Exception in callback StreamReaderProtocol.connection_made" for each
        # one: its done-callback calls task.exception() on a cancelled task.
        for transport in [*self._transports.values(), *self._reading_head]:
            transport.abort()
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=2.0)
            for task in stuck:  # pragma: no cover - a loop that ignores a lost transport
                task.cancel()
            for task in stuck:  # pragma: no cover
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
            loop = asyncio.get_running_loop()
            if loop.get_exception_handler() == self._loop_exception:
                loop.set_exception_handler(self._previous_handler)

    async def serve_forever(self) -> None:
        """Serve until cancelled (Ctrl-C); then close every connection cleanly first."""
        assert self._server is not None, "call start() first"
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            # asyncio.Server.serve_forever would leave the handlers to be cancelled
            # by asyncio.run, which logs an error per connected bot.
            await self.close()

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if "socket.accept()" in str(context.get("message", "")):
            self._accept_errors += 1
            if self._accept_errors == 1:
                logger.warning(
                    "cannot accept connections (%s); retrying every second, logged once", exc
                )
            return
        if self._previous_handler is not None:
            self._previous_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    def _arm_store_timer(self) -> None:
        """Expire detached sessions on their own clock (not only when a connection acts)."""
        loop = asyncio.get_running_loop()
        deadline = self.store.next_deadline()
        when = loop.time() + 1.0 if deadline is None else min(deadline, loop.time() + 1.0)
        self._store_timer = loop.call_at(when, self._on_store_timer)

    def _on_store_timer(self) -> None:
        self.store.handle_timer(asyncio.get_running_loop().time())
        self._arm_store_timer()

    async def __aenter__(self) -> LocalGateway:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- what tests use ----------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}/"

    @property
    def token(self) -> str:
        return min(self.store.config.tokens)

    @property
    def connections(self) -> list[GatewayServer]:
        return self.store.connections

    def dispatch(self, name: str, data: Any, *, session_id: str | None = None) -> list[int]:
        """Push a dispatch (see :meth:`SessionStore.dispatch`); the seqs assigned."""
        return self.store.dispatch(name, data, session_id=session_id)

    def inject(self, fault: Fault, connection: int = -1) -> None:
        """Apply ``fault`` now to a live connection (default: the newest)."""
        self.store.connections[connection].inject(fault, asyncio.get_running_loop().time())

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 5.0, *, poll: float = 0.01
    ) -> None:
        """Wait until ``predicate()`` holds; ``TimeoutError`` after ``timeout`` seconds.

        The predicate is checked whenever a connection does something *and* at
        least every ``poll`` seconds: it may read the client's side (events a bot
        has seen), which changes after the server's last action. Waking only on
        server activity lost that wake-up whenever the client was scheduled after
        the check (on Python 3.12+, where ``asyncio.wait_for`` no longer runs the
        waiting coroutine in a task of its own, every time).
        """
        changed = self._changed
        assert changed is not None, "call start() first"

        async def until() -> None:
            while not predicate():
                changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), poll)

        await asyncio.wait_for(until(), timeout)

    # -- per connection -----------------------------------------------------------------

    def _faults_for(self, index: int) -> ConnectionFaults | None:
        if self._faults is None:
            return None
        if callable(self._faults):
            return self._faults(index)
        return self._faults[index - 1] if index <= len(self._faults) else None

    def _wake(self, server: GatewayServer) -> None:
        waker = self._wakers.get(server)
        if waker is not None:
            waker.set()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # --- issue 16 hook: a plain HTTP request (REST, control API) is answered by
        # .control and is no gateway connection (fault indices count WebSockets only).
        accepted_at = loop.time()
        self._reading_head.add(writer.transport)  # close() drops these too
        try:  # the whole head within the handshake deadline (a byte a second is no way round)
            head = await asyncio.wait_for(
                _control.read_head(reader), self.store.config.handshake_timeout
            )
        except asyncio.TimeoutError:
            head = b""  # the connection below is past its deadline: HTTP 408
        finally:
            self._reading_head.discard(writer.transport)
        request = _control.plain_http(head)
        if request is not None:
            try:
                await _control.handle_http(self, request, head, reader, writer)
            finally:
                self._tasks.discard(task)
                self._notify()
            return
        # --- end of the issue 16 hook (head is fed to the connection below)
        server = GatewayServer(
            self.store, now=accepted_at, faults=self._faults_for(self.store.connection_count + 1)
        )
        peer = writer.get_extra_info("peername")
        logger.info("connection #%d: opened from %s", server.index, peer)
        wake = asyncio.Event()
        self._wakers[server] = wake
        self._transports[server] = writer.transport
        read_task: asyncio.Task[bytes] | None = None
        config = self.store.config
        unsent_since: float | None = None  # the client has not taken all we wrote since
        if head:  # issue 16 hook: the bytes read above
            server.receive_data(head, loop.time())
        try:
            while True:
                wake.clear()
                for chunk in server.data_to_send():
                    writer.write(chunk)
                    if server.faults.split_writes:
                        await writer.drain()  # really separate TCP writes
                unsent = writer.transport.get_write_buffer_size()
                if unsent:
                    unsent_since = loop.time() if unsent_since is None else unsent_since
                    stuck = loop.time() - unsent_since >= config.write_timeout
                    if unsent > config.max_write_buffer or stuck:
                        # A client that stopped reading: a zombie (its queue is bounded).
                        server.not_reading(unsent, loop.time())
                else:
                    unsent_since = None
                self._notify()
                if server.aborted:
                    writer.transport.abort()
                    break
                if server.state is ConnectionState.CLOSED:
                    break
                if read_task is None:
                    read_task = asyncio.ensure_future(reader.read(65536))
                wake_task = asyncio.ensure_future(wake.wait())
                deadline = server.next_deadline()
                if unsent_since is not None:  # check the writes again soon
                    write_check = loop.time() + 0.25
                    deadline = write_check if deadline is None else min(deadline, write_check)
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(
                    {read_task, wake_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                wake_task.cancel()
                now = loop.time()
                if read_task in done:
                    try:
                        data = read_task.result()
                    except (ConnectionError, OSError, ssl.SSLError):
                        data = b""
                    read_task = None
                    server.receive_data(data, now)
                if deadline is not None and now >= deadline:
                    server.handle_timer(now)
        except (ConnectionError, OSError):
            server.receive_data(None, loop.time())
        finally:
            if read_task is not None:
                read_task.cancel()
            if server.state is not ConnectionState.CLOSED:
                server.receive_data(None, loop.time())
            if not server.aborted:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
            self._wakers.pop(server, None)
            self._transports.pop(server, None)
            self._tasks.discard(task)
            self._notify()
            logger.info(
                "connection #%d: done (close code %s, by %s)",
                server.index,
                server.close_code,
                server.closed_by,
            )


def serve(
    config: ServerConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    seed: int | str = 0,
    faults: FaultsFor | None = None,
    deviations: Deviations | str | None = None,
) -> LocalGateway:
    """A local gateway; start it with ``async with serve() as gateway:`` (or ``await .start()``).

    ``deviations``: a :class:`~.profiles.Deviations` or a preset's name
    (``"seq-from-zero"``, ...; see ``PROFILES``) to behave like a server that is
    not quite Discord.
    """
    return LocalGateway(
        config,
        host=host,
        port=port,
        ssl_context=ssl_context,
        seed=seed,
        faults=faults,
        deviations=deviations,
    )
