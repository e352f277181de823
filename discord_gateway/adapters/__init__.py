"""Thin I/O loops around the sans-I/O core: ``threading``, ``asyncio``, ``trio``.

Each offers the same shape: a ``Shard`` that connects, identifies or resumes,
heartbeats, recovers from every network failure, and hands you typed events.
"""

from ._base import ShardOptions, default_ssl_context

__all__ = ("ShardOptions", "default_ssl_context")
