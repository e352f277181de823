"""The threading adapter: ``with Shard(...) as shard: for event in shard``.

One I/O thread per ``Shard`` owns the socket and runs one loop: wait (with
``selectors``) until the socket is readable or the core's ``next_deadline()``
passes, feed ``receive()`` or call ``handle_timer()``, write what the core
returns. Heartbeats, zombie detection and every timeout are the core's
timers, so there is no heartbeat thread that could race a reconnect. What to
do between connections (backoff, RESUME or IDENTIFY, ``Disconnected`` events,
giving up) is the shared sans-I/O :class:`~discord_gateway.adapters._driver.Driver`'s.
Events reach your thread through a ``queue.Queue``: slow code in the ``for``
loop never delays a heartbeat, and at ``max_pending_events`` the I/O thread
stops selecting the socket for reading until you catch up.

Your thread never touches the socket (an ``SSLSocket`` must not be read and
written from two threads). ``send()`` and ``close()`` call the core under a
lock, queue the bytes it returns and wake the I/O thread through a
``socket.socketpair()``, which is in the same ``select()`` as the socket; the
I/O thread alone writes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

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

_Socket = socket.socket  # an ssl.SSLSocket is one too


class Shard(ShardCommands[None]):
    """One gateway connection (one shard of a bot), kept alive by an I/O thread.

    ``for event in shard`` yields the core's typed events (``Ready``,
    ``Dispatch``, ``Disconnected`` for every lost connection, ...) until
    ``close()``. A fatal close code ends the shard with its exception
    (``AuthenticationFailed`` for 4004, ...; repeated failures before READY
    with ``ConnectionFailed``), raised wherever you wait: iteration,
    ``wait_ready()``, ``send()`` and the commands, and leaving ``with`` if
    nothing else raised it. ``send()`` and the commands may be called from
    any thread. Bad options raise ``ConfigurationError`` here.

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
        #: Why the shard stopped (None: closed by you), and whether you were told.
        self._error: BaseException | None = None
        self._error_raised = False
        self.connection: DiscordConnection = self._driver.conn
        self._events: queue.Queue[Event | Stop] = queue.Queue()
        # One lock guards the core, the driver and the outbox: the I/O thread and
        # send()/close() both call the core; only the I/O thread writes to the socket.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._outbox: deque[bytes] = deque()
        self._ready = False
        self._close_code = 1000
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: _Socket | None = None
        self._wake_w: _Socket | None = None
        self._watching: _Socket | None = None  # the socket in the selector, if any
        self._watched = 0  # and for which events

    def __repr__(self) -> str:
        return f"<Shard {self.options.shard} {self.connection!r}>"

    def __enter__(self) -> Shard:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc is None and not self._error_raised:
            self._raise_error()  # a fatal error nobody waited for: leaving says it

    def _raise_error(self) -> None:
        """Raise the error the shard stopped with, if any (once told, not again on exit)."""
        error = self._error
        if error is not None:
            self._error_raised = True
            raise error

    def _submit(self, op: Opcode, data: dict[str, Any]) -> None:
        self.send(op, data)

    def start(self) -> None:
        """Start the I/O thread (``with`` does it for you)."""
        if self._thread is not None:
            return
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        name = (
            "discord-gateway"
            if self.options.shard is None
            else f"discord-gateway {self.options.shard}"
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # the consumer's side -------------------------------------------------------------

    @property
    def pending_events(self) -> int:
        """Events received and not yet taken by you."""
        return self._events.qsize()

    def __iter__(self) -> Shard:
        return self

    def __next__(self) -> Event:
        item = self._events.get()
        if isinstance(item, Stop):
            self._events.put(item)  # every later call ends too
            self._raise_error()
            raise StopIteration
        with self._lock:
            resume = self._driver.bound.after_get(self._events.qsize())
        if resume:
            self._wakeup()  # the I/O thread selects the socket again
        return item

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the session is ready (READY or RESUMED received); False on timeout
        or once you closed the shard.

        If the shard stops with a fatal error first (``AuthenticationFailed``,
        ``DisallowedIntents``, ``ConnectionFailed``, ...), raises it.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: self._ready or self._stopped or self._driver.closing, timeout
            )
            if not self._ready:
                self._raise_error()
            return self._ready

    def send(self, op: Opcode | int, data: Any, *, timeout: float | None = None) -> None:
        """Send a command once the session can take it (after READY or RESUMED).

        Blocks until then (``TimeoutError`` after ``timeout`` seconds). Over the
        send limit the core queues the command and its timer releases it.
        Invalid commands raise ``InvalidCommand`` here, in your thread. If the
        shard stopped with a fatal error (e.g. ``AuthenticationFailed`` before
        READY) raises it; once you closed it, :class:`LocalProtocolError`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                if self._stopped:
                    self._raise_error()
                if self._driver.closing or self._stopped:
                    raise LocalProtocolError("the shard is closed: no command can be sent")
                if self._ready and self.connection.state in SENDING_STATES:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("the session did not become ready in time")
                self._changed.wait(remaining)
            self._outbox.append(self.connection.send_command(op, data, now=time.monotonic()))
        self._wakeup()

    def close(self, code: int = 1000) -> None:
        """Close the WebSocket (1000 ends the session), drain, stop the I/O thread.

        The I/O thread sends the close frame and waits for the gateway's answer
        no longer than the core's close timeout; then the socket is closed.
        """
        with self._changed:
            self._close_code = code
            self._driver.closing = True
            self._changed.notify_all()
        self._wakeup()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # Every wait in the I/O thread is bounded (connect, write, close timeouts).
            options = self.options
            thread.join(2 * options.connect_timeout + options.close_timeout + 1.0)
            if thread.is_alive():  # pragma: no cover - only a bug gets here
                self._log.error("the I/O thread did not stop; leaving it (a daemon thread)")
                return
            self._release_wakeup()
        self._stop(None)

    def _deliver(self, events: list[Event]) -> None:
        """Queue events for the consumer (the caller holds the lock)."""
        for event in events:
            self._events.put(event)
        if events:
            self._driver.bound.after_put(self._events.qsize())

    def _stop(self, error: BaseException | None) -> None:
        with self._changed:
            if not self._stopped:
                self._stopped = True
                self._error = error
                self._ready = False
                self._events.put(Stop(error))
                self._changed.notify_all()

    # waking the I/O thread ----------------------------------------------------------

    def _wakeup(self) -> None:
        wake = self._wake_w
        if wake is not None:
            # A full socketpair already holds a wakeup; a closed one has no reader.
            with contextlib.suppress(OSError):
                wake.send(b"\0")

    def _release_wakeup(self) -> None:
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._selector is not None:
            self._selector.close()
        self._wake_r = self._wake_w = None
        self._selector = None

    def _wait(self, sock: _Socket | None, deadline: float | None, *, write: bool = False) -> bool:
        """Block until ``sock`` is readable (writable), ``deadline`` passes or a wakeup.

        True if ``sock`` is ready. ``sock`` None: wait for the deadline or a wakeup.
        """
        selector = self._selector
        assert selector is not None
        # A deadline the core computed from a huge interval must not overflow select().
        timeout = (
            None if deadline is None else min(MAX_SECONDS, max(0.0, deadline - time.monotonic()))
        )
        if sock is not None:
            self._watch(sock, selectors.EVENT_WRITE if write else selectors.EVENT_READ)
        elif self._watching is not None:
            self._watch(self._watching, 0)  # paused: select the wakeup socket only
        ready = selector.select(timeout)
        hit = False
        for key, _ in ready:
            if key.fileobj is self._wake_r:
                with contextlib.suppress(OSError):
                    while self._wake_r.recv(4096):
                        pass
            else:
                hit = True
        return hit

    def _watch(self, sock: _Socket, events: int) -> None:
        """Select ``sock`` for ``events`` (0: not at all), changing only what differs."""
        selector = self._selector
        assert selector is not None
        if self._watching is not None and (self._watching is not sock or not events):
            selector.unregister(self._watching)
            self._watching, self._watched = None, 0
        if events and self._watching is None:
            selector.register(sock, events)
            self._watching, self._watched = sock, events
        elif events and self._watched != events:
            selector.modify(sock, events)
            self._watched = events

    # the recovery loop (I/O thread) -------------------------------------------------

    def _run(self) -> None:
        driver = self._driver
        error: BaseException | None = None
        try:
            while True:
                with self._lock:
                    attempt = driver.next_attempt()
                if attempt is None:
                    break
                if not self._sleep(attempt.delay):
                    continue  # closed meanwhile: next_attempt() ends it
                host, port = attempt.host, attempt.port
                try:
                    sock = self._open(host, port, attempt.tls)
                except OSError as exc:  # ssl.SSLError and timeouts are OSErrors
                    with self._lock:
                        self._deliver(driver.connect_failed(exc, host, port))
                    continue
                try:
                    self._drive(sock)
                finally:
                    self._watch(sock, 0)
                    with self._lock:
                        self._ready = False
                        self._outbox.clear()  # bytes for a WebSocket that is gone
                    _close_socket(sock)
                with self._lock:
                    self._deliver(driver.connection_lost())
            error = driver.error
        except GatewayError as exc:  # a bug or bad options: stop, say why
            self._log.error("stopping: %r", exc)
            error = exc
        except BaseException as exc:  # pragma: no cover - reported to the consumer
            self._log.exception("the I/O thread failed")
            error = exc
        finally:
            self._stop(error)

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds, then while you catch up; False if closed meanwhile."""
        deadline = time.monotonic() + delay
        while not self._driver.closing and time.monotonic() < deadline:
            self._wait(None, deadline)
        while not self._driver.closing and self._driver.bound.paused:
            self._wait(None, None)  # no new connection while you catch up
        return not self._driver.closing

    def _open(self, host: str, port: int, tls: ssl.SSLContext | None) -> _Socket:
        """TCP (and TLS) within ``connect_timeout``; the upgrade is the core's HELLO timeout."""
        deadline = time.monotonic() + self.options.connect_timeout
        sock = socket.create_connection((host, port), timeout=self.options.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                sock = tls.wrap_socket(sock, server_hostname=host)  # handshakes now
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _drive(self, sock: _Socket) -> None:
        """One WebSocket, from the upgrade request until the socket is finished."""
        conn = self.connection
        driver = self._driver
        close_started = False
        alive = self._step(driver.connect)
        while alive:
            if not self._flush(sock):
                alive = self._step(driver.lost)
                continue
            if driver.closing and not close_started:
                close_started = True
                with self._lock:
                    frame = driver.close_frame(self._close_code, time.monotonic())
                    if frame is None:
                        return  # no WebSocket yet: nothing to shake hands with
                    self._outbox.append(frame)
                continue
            with self._lock:
                deadline = conn.next_deadline()
                reading = driver.reading
            # Decrypted bytes may wait inside the SSLSocket, invisible to select().
            pending = reading and isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if pending or self._wait(sock if reading else None, deadline):
                data = _recv(sock, self._log)
                if data is not None:
                    alive = self._step(functools.partial(driver.receive, data))
                    if not alive:
                        break
            with self._lock:
                deadline = conn.next_deadline()
            if deadline is not None and time.monotonic() >= deadline:
                alive = self._step(driver.timer)
        self._flush(sock)

    def _step(self, call: Callable[[float], Step]) -> bool:
        """One driver call: queue what it returns, hand events on; False when the socket is done."""
        with self._changed:
            result = call(time.monotonic())
            self._outbox.extend(result.out)
            self._deliver(result.events)
            if result.ready != self._ready:
                self._ready = result.ready
                self._changed.notify_all()
            return result.alive

    def _flush(self, sock: _Socket) -> bool:
        """Write the outbox in order; False if the transport is lost."""
        while True:
            with self._lock:
                if not self._outbox:
                    return True
                data = self._outbox.popleft()
            if not self._send_all(sock, data):
                return False

    def _send_all(self, sock: _Socket, data: bytes) -> bool:
        # A peer that reads nothing for connect_timeout seconds is as good as gone.
        deadline = time.monotonic() + self.options.connect_timeout
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view) :]
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                if not self._wait(sock, deadline, write=True) and time.monotonic() >= deadline:
                    self._log.warning("writing to the gateway timed out")
                    return False
            except OSError as exc:
                self._log.info("connection lost while writing: %r", exc)
                return False
        return True


def _recv(sock: _Socket, log: logging.Logger) -> bytes | None:
    """Bytes read, ``b""`` when the transport is lost, None when nothing is there yet."""
    try:
        return sock.recv(READ_SIZE)
    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None  # e.g. half a TLS record
    except OSError as exc:  # resets, ssl.SSLError
        log.info("connection lost: %r", exc)
        return b""


def _close_socket(sock: _Socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
