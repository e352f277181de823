"""pytest plugin: a local Discord gateway per test.

Installed projects get it through the ``pytest11`` entry point (the
``discord_gateway_pytest`` shim, which imports this module only when a test
asks for the fixture); ``pytest_plugins = ["discord_gateway.testing.pytest_plugin"]``
loads it directly.

The ``discord_gateway`` fixture starts :func:`~.serve.serve` on 127.0.0.1 in
a thread of its own (its own event loop), so a bot under test may run in the
test's asyncio loop, in trio, or in threads alike. It yields a
:class:`GatewayFixture`::

    def test_my_bot_answers(discord_gateway):
        bot = make_bot(token=discord_gateway.token, api=discord_gateway.api_url)
        start_in_background(bot)
        discord_gateway.wait_ready()
        discord_gateway.push(discord_gateway.world.message("!ping"))
        discord_gateway.wait_for_request("POST", "channels/{channel_id}/messages")

Configure it per test with ``@pytest.mark.discord_gateway(**ServerConfig fields)``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

import pytest

from .faults import Fault
from .rest import RestRequest
from .serve import LocalGateway, serve, tls_contexts
from .server import GatewayServer, Received, ServerConfig, Session
from .world import Dispatch, World

__all__ = ("GatewayFixture", "discord_gateway")

T = TypeVar("T")
F = TypeVar("F", bound="GatewayFixture")


class GatewayFixture:
    """A local gateway running in a background thread, driven from any thread.

    ``url`` (WebSocket), ``api_url`` (REST base: ``http://127.0.0.1:port/api/v10``),
    ``control_url`` (the control API), ``token`` and ``world`` are what a bot
    and a test need; ``gateway`` is the :class:`~.serve.LocalGateway` itself.
    Changes go through the gateway's loop (:meth:`call`), so they are safe from
    any thread.

    Outside the fixture, ``with GatewayFixture(config, **options) as gateway:``
    runs one for a block (it serves from construction; leaving the block
    closes it). ``options`` are :func:`~.serve.serve`'s (``faults``,
    ``deviations``, ``ssl_context``, ...). ``tls=True`` serves ``wss://`` with a
    throwaway certificate (trustme, in the ``test`` extra); a bot connects with
    ``ssl_context=client_ssl_context``.
    The thread is named ``local-gateway``, apart from the adapters' own
    ``discord-gateway`` threads.
    """

    def __init__(
        self, config: ServerConfig | None = None, *, tls: bool = False, **options: Any
    ) -> None:
        if tls and "ssl_context" in options:
            raise ValueError("pass tls=True or your own ssl_context, not both")
        contexts = tls_contexts() if tls else None
        #: A client ``SSLContext`` that trusts the gateway's certificate (``tls=True``), else None.
        self.client_ssl_context: ssl.SSLContext | None = contexts.client if contexts else None
        if contexts is not None:
            options["ssl_context"] = contexts.server
        gateway = serve(config, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="local-gateway", daemon=True
        )
        self._thread.start()
        try:
            self.gateway: LocalGateway = self._run(gateway.start())
        except BaseException:
            self._stop_loop()  # a gateway that cannot start leaves no thread behind
            raise

    def __enter__(self: F) -> F:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function()`` in the gateway's loop and return its result."""
        if threading.current_thread() is self._thread:
            return function()
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(10)

    def close(self) -> None:
        """Close every connection, then stop the gateway's thread."""
        try:
            self._run(self.gateway.close(), 10)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- what a bot needs ----------------------------------------------------------

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def token(self) -> str:
        return self.gateway.token

    @property
    def base_url(self) -> str:
        scheme = "https" if self.gateway.ssl_context is not None else "http"
        return f"{scheme}://{self.gateway.host}:{self.gateway.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/control"

    @property
    def world(self) -> World:
        return self.gateway.world

    # -- driving it -----------------------------------------------------------------

    def dispatch(self, name: str, data: Any, *, session_id: str | None = None) -> list[int]:
        """Push a raw dispatch to the sessions that should see it; the seqs assigned."""
        return self.call(lambda: self.gateway.dispatch(name, data, session_id=session_id))

    def push(self, dispatch: Dispatch) -> list[int]:
        """Push what a world factory built: ``push(world.message("hi"))``."""
        return self.dispatch(*dispatch)

    def inject(self, fault: Fault, connection: int = -1) -> None:
        """Apply ``fault`` now to WebSocket connection ``connection`` (default: the newest)."""
        self.call(lambda: self.gateway.inject(fault, connection))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` (run in the gateway's loop) holds."""
        deadline = time.monotonic() + timeout
        while not self.call(predicate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout} s: {predicate}")
            time.sleep(0.01)

    def wait_ready(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``count`` connections got READY and are still connected."""

        def ready() -> bool:
            return (
                sum(
                    1
                    for c in self.gateway.connections
                    if c.state.value == "connected" and any(p.get("t") == "READY" for p in c.sent)
                )
                >= count
            )

        self.wait_for(ready, timeout)

    # -- what the bot did -------------------------------------------------------------

    @property
    def connections(self) -> list[GatewayServer]:
        return list(self.gateway.connections)

    @property
    def sessions(self) -> list[Session]:
        return self.call(lambda: list(self.gateway.store.sessions.values()))

    def commands(self, op: int | None = None) -> list[Received]:
        """Every gateway command bots sent (op ``op`` only, if given), in order."""
        received = self.call(lambda: [r for c in self.gateway.connections for r in c.received])
        return [r for r in received if op is None or r.op == op]

    def requests(self, method: str | None = None, route: str | None = None) -> list[RestRequest]:
        """REST requests bots made; ``route`` may use ``{name}`` for any one path segment."""
        pattern = None if route is None else re.sub(r"\\\{\w+\\\}", r"[^/]+", re.escape(route))
        return [
            r
            for r in self.call(lambda: list(self.gateway.rest.requests))
            if (method is None or r.method == method)
            and (pattern is None or re.fullmatch(pattern, r.route))
        ]

    def wait_for_request(self, method: str, route: str, timeout: float = 10.0) -> RestRequest:
        """The first REST request matching ``method`` and ``route``, once it came."""
        self.wait_for(lambda: bool(self.requests(method, route)), timeout)
        return self.requests(method, route)[0]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "discord_gateway(**config): ServerConfig fields for the discord_gateway fixture",
    )


def gateway_for(request: pytest.FixtureRequest) -> Iterator[GatewayFixture]:
    """The fixture's body: configured by the test's ``discord_gateway`` marker."""
    marker = request.node.get_closest_marker("discord_gateway")
    config = ServerConfig(**marker.kwargs) if marker is not None else None
    fixture = GatewayFixture(config)
    try:
        yield fixture
    finally:
        fixture.close()


@pytest.fixture
def discord_gateway(request: pytest.FixtureRequest) -> Iterator[GatewayFixture]:
    """A local Discord gateway for this test (see :class:`GatewayFixture`)."""
    yield from gateway_for(request)
