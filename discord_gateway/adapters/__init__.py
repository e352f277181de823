"""Thin I/O loops around the sans-I/O core: ``threading``, ``asyncio``, ``trio``.

Each offers the same shape: a ``Shard`` that connects, identifies or resumes,
heartbeats, recovers from every network failure, and hands you typed events.
Import the one you use (``trio`` is an optional extra, so nothing here imports
it)::

    from discord_gateway.adapters.threading import Shard  # with / for
    from discord_gateway.adapters.asyncio import Shard    # async with / async for
    from discord_gateway.adapters.trio import Shard       # async with / async for

``examples/`` has a runnable bot for each.

All three run one sans-I/O recovery driver (``_driver.Driver``), so they
behave the same way:

* every lost connection is a ``Disconnected`` event (code, reason, whether the
  session survives, the delay before the next attempt, the attempt number),
  also logged at WARNING; network outages are retried for ever, with backoff;
* ``max_failed_attempts`` (default 5) protocol failures in a row before READY
  (the gateway closes right after the upgrade or after IDENTIFY, sends what
  we cannot decode, refuses the upgrade, or sends no HELLO/READY in time)
  end the shard with ``ConnectionFailed`` and its causes; READY or RESUMED
  resets the count; a fatal close code (4004, 4010-4014) ends it at once;
* at ``max_pending_events`` (default 10,000) events waiting for you the
  adapter stops reading the socket, and reads again once half of them are
  taken: memory stays bounded and nothing is dropped. A stall longer than a
  heartbeat interval leaves the gateway's ACKs unread, so the connection is
  closed as a zombie and resumed (the missed events replayed) once you catch up;
* every option is checked when the ``Shard`` is built (``ConfigurationError``).
"""

from ._base import ManagerOptions, ShardKwargs, ShardOptions, default_ssl_context

__all__ = ("ManagerOptions", "ShardKwargs", "ShardOptions", "default_ssl_context")
