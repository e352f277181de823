"""The trio adapter: ``async with Shard(...) as shard: async for event in shard``.

Needs the ``trio`` extra. One task per ``Shard`` (in a nursery the ``async
with`` opens) runs the recovery loop and, per WebSocket, one loop: read with
a cancel scope whose deadline is the core's ``next_deadline()``, feed
``receive()`` or call ``handle_timer()``, write what the core returns.
Heartbeats, zombie detection and every timeout are the core's timers; there
is no heartbeat task to race a reconnect. What to do between connections
(backoff, RESUME or IDENTIFY, ``Disconnected`` events, giving up) is the
shared sans-I/O :class:`~discord_gateway.adapters._driver.Driver`'s. At
``max_pending_events`` the loop stops receiving until you catch up.

``send()`` and ``close()`` call the core from your task (trio runs one task at
a time, and a core call never awaits), queue the bytes it returns and cancel
the loop's wait, so the loop writes them (one write path) and re-reads the
deadline at once. ``trio.current_time()`` is the core's clock.
"""

from __future__ import annotations

import functools
import math
import ssl
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import trio

from ..connection import DiscordConnection
from ..errors import GatewayError, LocalProtocolError
from ..events import Event
from ..fsm.states import SENDING_STATES
from ..intents import Intents
from ..opcodes import Opcode
from ._base import DEFAULT_URL, MAX_SECONDS, READ_SIZE, ShardCommands, ShardOptions
from ._driver import Driver, Step, Stop

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._base import ShardKwargs

__all__ = ("Shard",)

# What a dead or unreachable peer raises; ssl.SSLError is wrapped in BrokenResourceError.
_LOST = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)


class Shard(ShardCommands[Coroutine[Any, Any, None]]):
    """One gateway connection (one shard of a bot), kept alive for you.

    ``async for event in shard`` yields the core's typed events (``Ready``,
    ``Dispatch``, ``Disconnected`` for every lost connection, ...) until
    ``close()``. A fatal close code ends the shard with its exception
    (``AuthenticationFailed`` for 4004, ...; repeated failures before READY
    with ``ConnectionFailed``), raised wherever you wait: iteration,
    ``wait_ready()``, ``send()`` and the commands, and leaving ``async with``
    if nothing else raised it. Slow consumers never delay heartbeats: events
    wait in a channel of at most ``max_pending_events``. Bad options raise
    ``ConfigurationError`` here.

    ``intents`` is :class:`~discord_gateway.Intents` flags or an int; the
    options are :class:`~discord_gateway.adapters.ShardKwargs`.
    """

    def __init__(
        self,
        token: str,
        *,
        intents: Intents | int,
        url: str = DEFAULT_URL,
        **options: Unpack[ShardKwargs],
    ) -> None:
        self.options = ShardOptions.build(token, intents, url, options)
        self._driver = Driver(self.options)
        self._log = self._driver.log
        self.connection: DiscordConnection = self._driver.conn
        # Unbounded, so the end of the stream can always be sent: the bound is
        # kept by not receiving (EventBound), and nothing is ever dropped.
        self._send_events, self._receive_events = trio.open_memory_channel[Event | Stop](math.inf)
        self._unpaused = trio.Event()  # replaced when reading pauses
        self._unpaused.set()
        self._ready = trio.Event()
        self._changed = trio.Event()  # set (and replaced) when ready/closing/stopped change
        self._outbox: deque[bytes] = deque()
        self._waiting: trio.CancelScope | None = None  # the loop's current wait
        self._connected: trio.Event | None = None  # set when the current socket is done
        self._close_code = 1000
        self._stopped = False
        self._done = trio.Event()
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None
        # Cancels the loop task only; the nursery's own scope also covers your body.
        self._run_scope = trio.CancelScope()

    async def __aenter__(self) -> Shard:
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        self._nursery_manager, self._nursery = manager, nursery
        nursery.start_soon(self._run, name=f"discord-gateway {self.options.shard or ''}".strip())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        manager = self._nursery_manager
        assert manager is not None
        try:
            await self.close()
        finally:
            self._run_scope.cancel()
            # The body's exception is not the nursery's: pass None so it propagates
            # as itself, not wrapped in an ExceptionGroup.
            await manager.__aexit__(None, None, None)
        self._raise_error_on_exit(exc)

    def _submit(self, op: Opcode, data: dict[str, Any]) -> Coroutine[Any, Any, None]:
        return self.send(op, data)

    @property
    def pending_events(self) -> int:
        """Events received and not yet taken by you."""
        return self._receive_events.statistics().current_buffer_used

    def __aiter__(self) -> Shard:
        return self

    async def __anext__(self) -> Event:
        item = await self._receive_events.receive()
        if isinstance(item, Stop):
            self._send_events.send_nowait(item)  # every later call ends too
            self._raise_error()
            raise StopAsyncIteration
        bound = self._driver.bound
        # The channel's statistics() costs ~1 us: only asked for while reading is paused.
        if bound.paused and bound.after_get(self.pending_events):
            self._unpaused.set()
            self._wakeup()
        return item

    def _deliver(self, events: list[Event]) -> None:
        for event in events:
            self._send_events.send_nowait(event)
        if events and self._driver.bound.after_put(self.pending_events):
            self._unpaused = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _stop(self, error: BaseException | None) -> None:
        if not self._stopped:
            self._stopped = True
            self._error = error
            self._send_events.send_nowait(Stop(error))
            self._notify()

    def _wakeup(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()

    # sending ------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Wait until the session is ready (READY or RESUMED received).

        If the shard stops first, raises why: its fatal error
        (``AuthenticationFailed``, ``DisallowedIntents``, ``ConnectionFailed``,
        ...), or ``LocalProtocolError`` if you closed it.
        """
        while not self._ready.is_set():
            if self._stopped:
                self._raise_error()
            if self._driver.closing or self._stopped:
                raise LocalProtocolError("the shard is closed: no command can be sent")
            await self._changed.wait()

    async def send(self, op: Opcode | int, data: Any) -> None:
        """Send a command once the session can take it (after READY or RESUMED).

        Over the send limit the core queues it and its timer releases it.
        Raises the shard's fatal error if it stopped with one (e.g.
        ``AuthenticationFailed`` before READY), ``LocalProtocolError`` once
        you closed it.
        """
        while True:
            if self._stopped:
                self._raise_error()
            if self._driver.closing or self._stopped:
                raise LocalProtocolError("the shard is closed: no command can be sent")
            if self._ready.is_set() and self.connection.state in SENDING_STATES:
                break
            await self._changed.wait()
        now = trio.current_time()
        self._outbox.append(self.connection.send_command(op, data, now=now))
        self._wakeup()

    # the recovery loop ---------------------------------------------------------------

    async def _run(self) -> None:
        driver = self._driver
        error: BaseException | None = None
        try:
            with self._run_scope:
                while (attempt := driver.next_attempt()) is not None:
                    if attempt.delay:
                        await trio.sleep(attempt.delay)
                    await self._unpaused.wait()  # no new connection while you catch up
                    host, port = attempt.host, attempt.port
                    try:
                        stream = await self._open(host, port, attempt.tls)
                    except _LOST as exc:
                        self._deliver(driver.connect_failed(exc, host, port))
                        continue
                    self._connected = trio.Event()
                    try:
                        await self._drive(stream)
                    finally:
                        self._set_ready(False)
                        self._outbox.clear()  # bytes for a WebSocket that is gone
                        self._connected.set()
                        await trio.aclose_forcefully(stream)
                    self._deliver(driver.connection_lost())
                error = driver.error
        except GatewayError as exc:  # a bug or bad options: stop, say why
            self._log.error("stopping: %r", exc)
            error = exc
        finally:
            self._stop(error)
            self._done.set()

    async def _open(self, host: str, port: int, tls: ssl.SSLContext | None) -> trio.abc.Stream:
        """TCP and TLS within ``connect_timeout``; the upgrade is the core's HELLO timeout."""
        with trio.fail_after(self.options.connect_timeout):
            tcp = await trio.open_tcp_stream(host, port)
            if tls is None:
                return tcp
            stream = trio.SSLStream(tcp, tls, server_hostname=host, https_compatible=True)
            try:
                await stream.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            return stream

    async def _drive(self, stream: trio.abc.Stream) -> None:
        """One WebSocket, from the upgrade request until the socket is finished."""
        conn = self.connection
        driver = self._driver
        close_started = False
        alive = self._step(driver.connect)
        while alive:
            if not await self._flush(stream):
                alive = self._step(driver.lost)
                continue
            if driver.closing and not close_started:
                close_started = True
                frame = driver.close_frame(self._close_code, trio.current_time())
                if frame is None:
                    return  # no WebSocket yet: nothing to shake hands with
                self._outbox.append(frame)
                continue
            deadline = conn.next_deadline()
            # A deadline computed from a huge interval: trio takes it, but bound it anyway.
            deadline = (
                math.inf if deadline is None else min(deadline, trio.current_time() + MAX_SECONDS)
            )
            data: bytes | None = None
            # send(), close() and catching up cancel this wait; a cancelled
            # receive_some loses nothing.
            with trio.CancelScope(deadline=deadline) as wait:
                self._waiting = wait
                try:
                    if not driver.reading:
                        await trio.sleep_forever()  # at the bound: stop receiving
                    data = bytes(await stream.receive_some(READ_SIZE))
                except _LOST as exc:
                    self._log.info("connection lost: %r", exc)
                    data = b""
                finally:
                    self._waiting = None
            if data is not None:
                alive = self._step(functools.partial(driver.receive, data))
                if not alive:
                    break
            deadline = conn.next_deadline()
            if deadline is not None and trio.current_time() >= deadline:
                alive = self._step(driver.timer)
        await self._flush(stream)

    def _step(self, call: Callable[[float], Step]) -> bool:
        """One driver call: queue what it returns, hand events on; False when the socket is done."""
        result = call(trio.current_time())
        self._outbox.extend(result.out)
        self._deliver(result.events)
        self._set_ready(result.ready)
        return result.alive

    def _set_ready(self, ready: bool) -> None:
        if ready and not self._ready.is_set():
            self._ready.set()
            self._notify()
        elif not ready and self._ready.is_set():
            self._ready = trio.Event()

    async def _flush(self, stream: trio.abc.Stream) -> bool:
        """Write the outbox in order; False if the transport is lost."""
        try:
            # A peer that reads nothing for connect_timeout seconds is as good as gone.
            with trio.fail_after(self.options.connect_timeout):
                while self._outbox:
                    await stream.send_all(self._outbox.popleft())
        except _LOST as exc:
            self._log.info("connection lost while writing: %r", exc)
            return False
        return True

    async def close(self, code: int = 1000) -> None:
        """Close the WebSocket (1000 ends the session), drain, and stop.

        Never waits forever on a dead peer: the core's close timeout applies,
        and cancelling ``close()`` closes the socket at once.
        """
        self._driver.closing = True
        self._close_code = code
        self._notify()
        self._wakeup()
        if self._nursery is not None and not self._done.is_set():
            try:
                # The loop sends the close frame and drains; the close timeout bounds it.
                # A backoff sleep or a connect in progress is just cancelled.
                connected = self._connected
                if connected is not None and not connected.is_set():
                    await connected.wait()
            finally:
                self._run_scope.cancel()
            await self._done.wait()
        self._stop(None)
