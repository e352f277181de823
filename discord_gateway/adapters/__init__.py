"""Thin I/O loops around the sans-I/O core: ``threading``, ``asyncio``, ``trio``.

Each offers the same shape: a ``Shard`` that connects, identifies or resumes,
heartbeats, recovers from every network failure, and hands you typed events.
Import the one you use (``trio`` is an optional extra, so nothing here imports
it)::

    from discord_gateway.adapters.threading import Shard  # with / for
    from discord_gateway.adapters.asyncio import Shard    # async with / async for
    from discord_gateway.adapters.trio import Shard       # async with / async for

``examples/`` has a runnable bot for each.
"""

from ._base import ShardOptions, default_ssl_context

__all__ = ("ShardOptions", "default_ssl_context")
