"""The asyncio adapter: ``async with Shard(...) as shard: async for event in shard``.

One ``asyncio.Protocol`` per WebSocket feeds the core straight from
``data_received`` and writes what it returns through the one transport; one
``loop.call_at`` timer follows ``next_deadline()``. There is no heartbeat
task that could race a reconnect: heartbeats, zombie detection, the HELLO and
close timeouts and the send limit are all the core's timers. A supervisor
task runs the recovery loop: ``reconnect()`` backoff, then RESUME on
``resume_gateway_url`` or IDENTIFY on the original URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from ..connection import DiscordConnection
from ..errors import GatewayError, LocalProtocolError
from ..events import Event, Ready, Resumed
from ..fsm import State
from ..fsm.states import OPEN_STATES, SENDING_STATES
from ..opcodes import Opcode
from ._base import LOG, ShardOptions, step, stop_error

__all__ = ("Shard",)


class _Stop:
    """End of the event stream; ``error`` is raised to the consumer if set."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _GatewayProtocol(asyncio.Protocol):
    """One WebSocket: bytes in, core, bytes out."""

    def __init__(self, shard: Shard) -> None:
        self._shard = shard
        self._conn = shard.connection
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[None] = self._loop.create_future()

    # asyncio callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._step(lambda now: [self._conn.connect(now=now)])

    def data_received(self, data: bytes) -> None:
        self._step(lambda now: self._conn.receive(data, now=now))

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is not None:
                LOG.info("connection lost: %s", exc)
            self._step(lambda now: self._conn.receive(None, now=now))
            self._finish()

    # the loop ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _step(self, call: Callable[[float], list[bytes]]) -> None:
        """Run one core call; write its output; hand events on; re-arm the timer."""
        if self.done.done():
            return
        shard = self._shard
        try:
            result = step(
                shard.options,
                self._conn,
                call,
                self._loop.time(),
                gate_identify=shard._before_identify is not None,
            )
        except GatewayError as err:  # a bug or bad options: stop, say why
            shard._stop(err)
            self._finish()
            return
        for chunk in result.out:
            self.write(chunk)
        for event in result.events:
            if isinstance(event, (Ready, Resumed)):
                shard._ready.set()
            shard._deliver(event)
        if result.identify_due:
            assert shard._before_identify is not None
            self._loop.create_task(self._identify_when_allowed(shard._before_identify))
        if self._conn.state not in SENDING_STATES:
            shard._ready.clear()
        if not result.alive:
            self._finish()
            return
        self._arm_timer()

    async def _identify_when_allowed(self, gate: Callable[[Shard], Awaitable[None]]) -> None:
        try:
            await gate(self._shard)
        except GatewayError as err:  # e.g. no session starts left today
            self._shard._stop(err)
            self.abort()
            return
        if not self.done.done() and self._conn.state is State.HELLO:
            self._step(lambda now: [self._shard.options.greeting(self._conn, now)])

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._conn.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._step(lambda now: self._conn.handle_timer(now))

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._shard._ready.clear()
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._finish()


class Shard:
    """One gateway connection (one shard of a bot), kept alive for you.

    ``async for event in shard`` yields the core's typed events (``Ready``,
    ``Dispatch``, ...) until ``close()``; a fatal close code raises its
    exception (``AuthenticationFailed`` for 4004, ``DisallowedIntents`` for
    4014, ...). Slow consumers never delay heartbeats: events wait in a queue.
    """

    def __init__(
        self,
        token: str,
        *,
        intents: int,
        url: str = "wss://gateway.discord.gg",
        before_identify: Callable[[Shard], Awaitable[None]] | None = None,
        **options: Any,
    ) -> None:
        self.options = ShardOptions(token=token, intents=intents, url=url, **options)
        # Awaited before each IDENTIFY (not RESUME): ShardManager's concurrency gate.
        self._before_identify = before_identify
        self.connection: DiscordConnection = self.options.new_connection()
        self._events: asyncio.Queue[Event | _Stop] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._protocol: _GatewayProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stopped = False
        self._stopped_event = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Shard {self.options.shard} {self.connection!r}>"

    async def __aenter__(self) -> Shard:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def __aiter__(self) -> Shard:
        return self

    async def __anext__(self) -> Event:
        item = await self._events.get()
        if isinstance(item, _Stop):
            self._events.put_nowait(item)  # every later call ends too
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    def _deliver(self, event: Event) -> None:
        self._events.put_nowait(event)

    def _stop(self, error: BaseException | None) -> None:
        if not self._stopped:
            self._stopped = True
            self._stopped_event.set()
            self._events.put_nowait(_Stop(error))

    # sending ------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Wait until the session is ready (READY or RESUMED received).

        Raises :class:`LocalProtocolError` if the shard stops first (closed, or
        a fatal close code).
        """
        while not self._ready.is_set():
            if self._stopped:
                raise LocalProtocolError("the shard is closed")
            ready = asyncio.ensure_future(self._ready.wait())
            stopped = asyncio.ensure_future(self._stopped_event.wait())
            try:
                await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                stopped.cancel()

    async def send(self, op: Opcode | int, data: Any) -> None:
        """Send a command once the session can take it (after IDENTIFY/RESUME).

        Over the send limit the core queues it and its timer releases it.
        Raises :class:`LocalProtocolError` once the shard is closed.
        """
        while True:
            await self.wait_ready()
            protocol = self._protocol
            if protocol is not None and self.connection.state in SENDING_STATES:
                break
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        protocol.write(self.connection.send_command(op, data, now=loop.time()))
        protocol._arm_timer()

    # the recovery loop ----------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        conn = self.connection
        error: BaseException | None = None
        try:
            while not self._closing and not self._stopped and conn.should_reconnect():
                delay = conn.reconnect()
                if delay:
                    LOG.info("reconnecting in %.2f s", delay)
                    await asyncio.sleep(delay)
                host, port = conn.destination
                tls = self.options.tls(conn)
                try:
                    _, protocol = await asyncio.wait_for(
                        loop.create_connection(
                            lambda: _GatewayProtocol(self),
                            host,
                            port,
                            ssl=tls,
                            server_hostname=host if tls is not None else None,
                        ),
                        self.options.connect_timeout,
                    )
                except (OSError, asyncio.TimeoutError) as exc:
                    LOG.warning("could not connect to %s:%s: %r", host, port, exc)
                    continue
                self._protocol = protocol
                try:
                    await protocol.done
                finally:
                    self._protocol = None
                    protocol.abort()
            error = stop_error(conn)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # pragma: no cover - reported to the consumer
            error = exc
            raise
        finally:
            self._stop(error)

    async def close(self, code: int = 1000) -> None:
        """Close the WebSocket (1000 ends the session), drain, and stop.

        Never waits forever on a dead peer: the core's close timeout applies,
        and cancelling ``close()`` aborts the socket.
        """
        self._closing = True
        protocol = self._protocol
        try:
            if protocol is not None and self.connection.state in OPEN_STATES:
                if self.connection.state is State.CONNECTING:
                    protocol.abort()
                else:
                    loop = asyncio.get_running_loop()
                    protocol.write(self.connection.close(code, now=loop.time()))
                    protocol._arm_timer()
                    await protocol.done
        finally:
            if protocol is not None:
                protocol.abort()
            if self._task is not None:
                if not self._task.done():
                    self._task.cancel()
                # Waits for the task to finish; cancelling close() still propagates.
                await asyncio.gather(self._task, return_exceptions=True)
            self._stop(None)
