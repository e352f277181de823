"""The asyncio adapter: ``async with Shard(...) as shard: async for event in shard``.

One ``asyncio.Protocol`` per WebSocket feeds the core straight from
``data_received`` and writes what it returns through the one transport; one
``loop.call_at`` timer follows ``next_deadline()``. There is no heartbeat
task that could race a reconnect: heartbeats, zombie detection and every
timeout are the core's timers. A supervisor task runs the recovery loop whose
decisions (backoff, RESUME or IDENTIFY, ``Disconnected`` events, giving up)
are the shared sans-I/O :class:`~discord_gateway.adapters._driver.Driver`'s.
When ``max_pending_events`` wait for you, the transport stops reading
(``pause_reading()``) until you catch up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..connection import DiscordConnection
from ..errors import GatewayError, LocalProtocolError
from ..events import Event
from ..fsm.states import SENDING_STATES
from ..intents import Intents
from ..opcodes import Opcode
from ._base import DEFAULT_URL, ShardCommands, ShardOptions
from ._driver import Driver, Step, Stop

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._base import ShardKwargs

__all__ = ("Shard",)


class _GatewayProtocol(asyncio.Protocol):
    """One WebSocket: bytes in, core, bytes out."""

    def __init__(self, shard: Shard) -> None:
        self._shard = shard
        self._driver = shard._driver
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[None] = self._loop.create_future()

    # asyncio callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._apply(self._driver.connect)

    def data_received(self, data: bytes) -> None:
        self._apply(lambda now: self._driver.receive(data, now))

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is not None:
                self._driver.log.info("connection lost: %s", exc)
            self._apply(self._driver.lost)
            self._finish()

    # the loop ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _apply(self, call: Callable[[float], Step]) -> None:
        """Run one driver call; write its output; hand events on; re-arm the timer."""
        if self.done.done():
            return
        shard = self._shard
        try:
            result = call(self._loop.time())
        except GatewayError as err:  # a bug or bad options: stop, say why
            shard._stop(err)
            self._finish()
            return
        for chunk in result.out:
            self.write(chunk)
        if result.events:
            shard._deliver(result.events)
        shard._set_ready(result.ready)
        if result.identify_due:
            assert shard._before_identify is not None
            self._loop.create_task(self._identify_when_allowed(shard._before_identify))
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
        self._apply(self._driver.greet)

    def _arm_timer(self) -> None:
        deadline = self._driver.conn.next_deadline()
        timer = self._timer
        if timer is not None:
            if timer.when() == deadline:
                return  # unchanged (a heartbeat ACK): keep the armed timer
            timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._apply(self._driver.timer)

    def pause_reading(self, paused: bool) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._shard._set_ready(False)
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._finish()


class Shard(ShardCommands[Coroutine[Any, Any, None]]):
    """One gateway connection (one shard of a bot), kept alive for you.

    ``async for event in shard`` yields the core's typed events (``Ready``,
    ``Dispatch``, ``Disconnected`` for every lost connection, ...) until
    ``close()``. A fatal close code ends the shard with its exception
    (``AuthenticationFailed`` for 4004, ...; repeated failures before READY
    with ``ConnectionFailed``), raised wherever you wait: iteration,
    ``wait_ready()``, ``send()`` and the commands, and leaving ``async with``
    if nothing else raised it. Slow consumers never delay heartbeats: events
    wait in a queue of at most ``max_pending_events``. Bad options raise
    ``ConfigurationError`` here.

    ``intents`` is :class:`~discord_gateway.Intents` flags or an int; the
    options are :class:`~discord_gateway.adapters.ShardKwargs`.
    ``before_identify`` is awaited before each IDENTIFY (not RESUME) with the
    shard: ``ShardManager`` paces session starts with it.
    """

    def __init__(
        self,
        token: str,
        *,
        intents: Intents | int,
        url: str = DEFAULT_URL,
        before_identify: Callable[[Shard], Awaitable[None]] | None = None,
        **options: Unpack[ShardKwargs],
    ) -> None:
        self.options = ShardOptions.build(token, intents, url, options)
        # Awaited before each IDENTIFY (not RESUME): ShardManager's concurrency gate.
        self._before_identify = before_identify
        self._driver = Driver(self.options, gate_identify=before_identify is not None)
        self.connection: DiscordConnection = self._driver.conn
        # Events for the consumer, and the futures of consumers waiting for one: a
        # read's events go in with one extend() and wake the consumer once.
        self._events: deque[Event | Stop] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._bound = self._driver.bound
        self._ready = asyncio.Event()
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._protocol: _GatewayProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._stopped_event = asyncio.Event()

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
        self._raise_error_on_exit(exc)

    def _submit(self, op: Opcode, data: dict[str, Any]) -> Coroutine[Any, Any, None]:
        return self.send(op, data)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def pending_events(self) -> int:
        """Events received and not yet taken by you."""
        return len(self._events)

    def __aiter__(self) -> Shard:
        return self

    async def __anext__(self) -> Event:
        events = self._events
        while not events:
            # Nothing waits: sleep until _deliver() or _stop() wakes every waiter.
            waiter = asyncio.get_running_loop().create_future()
            waiters = self._waiters
            waiters.append(waiter)
            try:
                await waiter
            except BaseException:  # cancelled: forget this waiter
                if waiter in waiters:
                    waiters.remove(waiter)
                raise
        item = events.popleft()
        if isinstance(item, Stop):
            events.append(item)  # every later call ends too
            self._raise_error()
            raise StopAsyncIteration
        bound = self._bound
        if bound.paused and bound.after_get(len(events)):
            self._unpaused.set()
            if self._protocol is not None:
                self._protocol.pause_reading(False)
        return item

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            waiters.clear()

    def _deliver(self, events: list[Event]) -> None:
        if not events:
            return
        queue = self._events
        queue.extend(events)
        self._wake()
        if self._bound.after_put(len(queue)):
            self._unpaused.clear()
            if self._protocol is not None and not self._driver.closing:
                self._protocol.pause_reading(True)

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()

    def _stop(self, error: BaseException | None) -> None:
        if not self._stopped:
            self._stopped = True
            self._error = error
            self._stopped_event.set()
            self._events.append(Stop(error))
            self._wake()

    # sending ------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Wait until the session is ready (READY or RESUMED received).

        If the shard stops first, raises why: its fatal error
        (``AuthenticationFailed``, ``DisallowedIntents``, ``ConnectionFailed``,
        ...), or :class:`LocalProtocolError` if you closed it.
        """
        while not self._ready.is_set():
            if self._stopped:
                self._raise_error()
                raise LocalProtocolError("the shard is closed: no command can be sent")
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
        Raises the shard's fatal error if it stopped with one (e.g.
        ``AuthenticationFailed`` before READY), :class:`LocalProtocolError`
        once you closed it.
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
        driver = self._driver
        error: BaseException | None = None
        try:
            while (attempt := driver.next_attempt()) is not None:
                if attempt.delay:
                    await asyncio.sleep(attempt.delay)
                await self._unpaused.wait()  # no new connection while you catch up
                host, port, tls = attempt.host, attempt.port, attempt.tls
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
                    self._deliver(driver.connect_failed(exc, host, port))
                    continue
                self._protocol = protocol
                try:
                    await protocol.done
                finally:
                    self._protocol = None
                    protocol.abort()
                self._deliver(driver.connection_lost())
            error = driver.error
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
        self._driver.closing = True
        self._unpaused.set()
        protocol = self._protocol
        try:
            if protocol is not None:
                frame = self._driver.close_frame(code, asyncio.get_running_loop().time())
                if frame is None:
                    protocol.abort()  # no WebSocket yet: nothing to shake hands with
                elif frame:
                    protocol.pause_reading(False)  # the close handshake needs reading
                    protocol.write(frame)
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
