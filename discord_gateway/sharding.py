"""Sharding helpers: which shard gets a guild, the ``GET /gateway/bot`` body,
and :class:`IdentifyScheduler`, which decides when each shard may IDENTIFY.

Theory of operation of the scheduler
------------------------------------
Discord limits new sessions in two ways (protocol 20, 21):

* concurrency: shards share ``max_concurrency`` buckets, ``rate_limit_key =
  shard_id % max_concurrency``, and each bucket allows one IDENTIFY per 5
  seconds. Breaking it is answered with op 9 a few seconds later (protocol 60);
* a daily budget, ``session_start_limit.remaining``, reset ``reset_after``
  after the ``GET /gateway/bot`` call. Exhausting it resets the bot's token,
  so the scheduler never grants more identifies than remain.

The scheduler is pure: every method takes ``now`` (seconds, any monotonic
clock) and it never reads a clock or sleeps. Shards ``request()`` a slot;
``poll(now)`` returns the shards that may send IDENTIFY now (and counts them as
sent); ``next_deadline()`` says when polling can next grant anything. Every
IDENTIFY, including a re-identify after a lost session, goes through it;
RESUME does not (it is not rate limited, protocol 20).

Buckets start in order: requests are served first come, first served, and
requests made at the same ``now`` by shard id, so requesting every shard at
startup identifies shards ``0..c-1`` at once, then ``c..2c-1`` 5 s later, and
so on (``c = max_concurrency``).

Releasing (protocol 60). A granted identify holds its bucket until the gateway
answers: call ``released(shard_id, now)`` on READY, on op 9, or when the
connection closes. The next identify in that bucket needs *both* the 5 s
window since the previous one *and* that release: releasing never shortens
the 5 s window (Discord counts from the IDENTIFY it received), it only ends
the wait for an answer, so that a slow READY cannot overlap the next
identify (kord #693). A release that never comes (a lost connection the
caller forgot to report) frees the bucket after ``answer_timeout`` seconds so
that one bug cannot stall every shard behind it.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError, GatewayError, LocalProtocolError

__all__ = (
    "DEFAULT_ANSWER_TIMEOUT",
    "IDENTIFY_INTERVAL",
    "GatewayBotInfo",
    "IdentifyLimitExhausted",
    "IdentifyScheduler",
    "SessionStartLimit",
    "shard_for_guild",
)

#: One IDENTIFY per rate-limit key per this many seconds (protocol 21).
IDENTIFY_INTERVAL = 5.0
#: Seconds after which an identify that was never released frees its bucket.
DEFAULT_ANSWER_TIMEOUT = 30.0
#: After a reset we assume the next one 24 hours later (protocol 20), until the
#: caller passes a fresh ``GET /gateway/bot`` body to ``update_limit``.
_LIMIT_PERIOD = 24 * 60 * 60.0


class IdentifyLimitExhausted(GatewayError):
    """No session starts remain before ``resets_at`` (protocol 20).

    Identifying anyway would exceed the daily limit, which terminates every
    session and resets the bot's token. Request again at ``resets_at`` (same
    clock as the ``now`` given to the scheduler).
    """

    resets_at: float

    def __init__(self, message: str, resets_at: float) -> None:
        super().__init__(message)
        self.resets_at = resets_at


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shard_for_guild(guild_id: int | str, num_shards: int) -> int:
    """The shard that receives a guild's events: ``(guild_id >> 22) % num_shards`` (protocol 44).

    Events without a ``guild_id`` (DMs, entitlements, ...) go to shard 0.
    """
    if not _is_int(num_shards) or num_shards < 1:
        raise ConfigurationError(f"num_shards must be an int >= 1, not {num_shards!r}")
    if isinstance(guild_id, str) and guild_id.isascii() and guild_id.isdigit():
        number = int(guild_id)
    elif isinstance(guild_id, int) and not isinstance(guild_id, bool):
        number = guild_id
    else:
        number = 0  # refused just below
    if not 0 < number < 2**64:
        raise ConfigurationError(
            f"guild_id must be a snowflake (int or decimal str, 0 < id < 2**64), not {guild_id!r}"
        )
    return (number >> 22) % num_shards


def _field(payload: Mapping[str, Any], key: str, minimum: int) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(
            f"GET /gateway/bot: {key} must be an int >= {minimum}, not {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class SessionStartLimit:
    """``session_start_limit`` of ``GET /gateway/bot`` (protocol 46).

    ``reset_after`` is in **seconds** here (the payload has milliseconds).
    """

    total: int
    remaining: int
    reset_after: float
    max_concurrency: int

    def __post_init__(self) -> None:
        if not 0 <= self.remaining <= self.total:
            raise ConfigurationError(
                f"session start limit: need 0 <= remaining <= total, not "
                f"{self.remaining}/{self.total}"
            )
        if self.reset_after < 0:
            raise ConfigurationError(f"reset_after must be >= 0, not {self.reset_after}")
        if self.max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, not {self.max_concurrency}")

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SessionStartLimit:
        if not isinstance(payload, Mapping):
            raise ConfigurationError(
                f"GET /gateway/bot: session_start_limit must be an object, not {payload!r}"
            )
        return cls(
            total=_field(payload, "total", 0),
            remaining=_field(payload, "remaining", 0),
            reset_after=_field(payload, "reset_after", 0) / 1000,  # ms on the wire (protocol 46)
            max_concurrency=_field(payload, "max_concurrency", 1),
        )


@dataclass(frozen=True, slots=True)
class GatewayBotInfo:
    """The body of ``GET /gateway/bot`` (protocol 46): URL, recommended shards, limits."""

    url: str
    shards: int
    session_start_limit: SessionStartLimit

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> GatewayBotInfo:
        if not isinstance(payload, Mapping):
            raise ConfigurationError(f"GET /gateway/bot: body must be an object, not {payload!r}")
        url = payload.get("url")
        if not isinstance(url, str) or not url.startswith(("wss://", "ws://")):
            raise ConfigurationError(f"GET /gateway/bot: url must be a ws(s):// URL, not {url!r}")
        return cls(
            url=url,
            shards=_field(payload, "shards", 1),
            session_start_limit=SessionStartLimit.from_payload(
                payload.get("session_start_limit")  # type: ignore[arg-type]
            ),
        )


class IdentifyScheduler:
    """When each shard may IDENTIFY (protocol 20, 21, 60); see the module docstring.

    ``remaining``/``total``/``resets_at`` describe the daily budget; leave
    ``remaining`` as None to track concurrency only. Prefer
    :meth:`from_session_start_limit`.
    """

    __slots__ = (
        "_answer_timeout",
        "_granted_at",
        "_in_flight",
        "_max_concurrency",
        "_pending",
        "_remaining",
        "_resets_at",
        "_total",
    )

    def __init__(
        self,
        max_concurrency: int = 1,
        *,
        remaining: int | None = None,
        total: int | None = None,
        resets_at: float | None = None,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> None:
        if not _is_int(max_concurrency) or max_concurrency < 1:
            raise ConfigurationError(
                f"max_concurrency must be an int >= 1, not {max_concurrency!r}"
            )
        if remaining is not None and (not _is_int(remaining) or remaining < 0):
            raise ConfigurationError(f"remaining must be None or an int >= 0, not {remaining!r}")
        if remaining is not None and resets_at is None:
            raise ConfigurationError("resets_at is required when remaining is given")
        if answer_timeout < IDENTIFY_INTERVAL:
            raise ConfigurationError(
                f"answer_timeout must be at least {IDENTIFY_INTERVAL} s, not {answer_timeout}"
            )
        self._max_concurrency = max_concurrency
        self._remaining = remaining
        self._total = remaining if total is None else total
        self._resets_at = resets_at
        self._answer_timeout = answer_timeout
        # (requested_at, shard_id), sorted: first come, first served; ties by shard id.
        self._pending: list[tuple[float, int]] = []
        # rate_limit_key -> time of the last identify granted in that bucket.
        self._granted_at: dict[int, float] = {}
        # rate_limit_key -> (shard_id, granted_at) not yet released.
        self._in_flight: dict[int, tuple[int, float]] = {}

    @classmethod
    def from_session_start_limit(
        cls,
        limit: SessionStartLimit,
        now: float,
        *,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> IdentifyScheduler:
        """A scheduler for a fresh ``GET /gateway/bot`` answer received at ``now``."""
        return cls(
            limit.max_concurrency,
            remaining=limit.remaining,
            total=limit.total,
            resets_at=now + limit.reset_after,
            answer_timeout=answer_timeout,
        )

    # -- introspection -----------------------------------------------------------

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    @property
    def remaining(self) -> int | None:
        """Session starts left before :attr:`resets_at` (None: not tracked)."""
        return self._remaining

    @property
    def resets_at(self) -> float | None:
        return self._resets_at

    @property
    def pending(self) -> list[int]:
        """Shard ids waiting for a slot, in the order they will be served per bucket."""
        return [shard_id for _, shard_id in self._pending]

    def rate_limit_key(self, shard_id: int) -> int:
        """protocol 21: ``shard_id % max_concurrency``."""
        return shard_id % self._max_concurrency

    # -- inputs --------------------------------------------------------------------

    def update_limit(self, limit: SessionStartLimit, now: float) -> None:
        """Take a fresh ``GET /gateway/bot`` answer (protocol 46: don't cache it for long).

        Pending requests are kept; if ``max_concurrency`` changed, every bucket
        conservatively inherits the most recent identify and in-flight slot.
        """
        self._remaining = limit.remaining
        self._total = limit.total
        self._resets_at = now + limit.reset_after
        if limit.max_concurrency != self._max_concurrency:
            self._max_concurrency = limit.max_concurrency
            latest = max(self._granted_at.values(), default=None)
            in_flight = list(self._in_flight.values())
            self._granted_at = (
                {} if latest is None else {k: latest for k in range(limit.max_concurrency)}
            )
            self._in_flight = {}
            for shard_id, since in in_flight:
                key = self.rate_limit_key(shard_id)
                old = self._in_flight.get(key)
                if old is None or since > old[1]:
                    self._in_flight[key] = (shard_id, since)

    def request(self, shard_id: int, now: float) -> None:
        """Queue an IDENTIFY for ``shard_id``.

        Raises :class:`IdentifyLimitExhausted` when the daily budget cannot
        cover it together with the requests already queued: refusing early
        means no request accepted here waits for a budget that never comes.
        A shard whose previous identify is still in flight is released first
        (asking again means that identify was answered, by op 9 or a close).
        """
        if not _is_int(shard_id) or shard_id < 0:
            raise ConfigurationError(f"shard_id must be an int >= 0, not {shard_id!r}")
        if any(queued == shard_id for _, queued in self._pending):
            raise LocalProtocolError(f"shard {shard_id} already has an identify queued")
        self._apply_reset(now)
        if self._remaining is not None and len(self._pending) >= self._remaining:
            assert self._resets_at is not None
            raise IdentifyLimitExhausted(
                f"no session starts left for shard {shard_id}: {self._remaining} remaining, "
                f"{len(self._pending)} already queued; resets at {self._resets_at} "
                "(Discord limits new sessions per day)",
                self._resets_at,
            )
        self.released(shard_id, now)
        bisect.insort(self._pending, (now, shard_id))

    def cancel(self, shard_id: int) -> bool:
        """Drop a queued request (the shard is shutting down). False if none was queued."""
        for index, (_, queued) in enumerate(self._pending):
            if queued == shard_id:
                del self._pending[index]
                return True
        return False

    def released(self, shard_id: int, now: float) -> bool:
        """The gateway answered ``shard_id``'s identify (READY, op 9) or its connection
        closed (protocol 60). Does not shorten the 5 s window. False if nothing was held."""
        key = self.rate_limit_key(shard_id)
        held = self._in_flight.get(key)
        if held is None or held[0] != shard_id:
            return False
        del self._in_flight[key]
        return True

    # -- outputs -------------------------------------------------------------------

    def poll(self, now: float) -> list[int]:
        """Shard ids that may send IDENTIFY now, in shard order per wave.

        They are counted as sent: ``remaining`` drops by one each and their
        buckets are held until :meth:`released` (or ``answer_timeout``).
        """
        self._apply_reset(now)
        granted: list[int] = []
        busy: set[int] = set()
        kept: list[tuple[float, int]] = []
        for entry in self._pending:
            shard_id = entry[1]
            key = self.rate_limit_key(shard_id)
            if key in busy or (self._remaining is not None and self._remaining <= 0):
                kept.append(entry)
                continue
            busy.add(key)  # the oldest request of a bucket goes first
            if self._bucket_free_at(key) > now:
                kept.append(entry)
                continue
            granted.append(shard_id)
            self._granted_at[key] = now
            self._in_flight[key] = (shard_id, now)
            if self._remaining is not None:
                self._remaining -= 1
        self._pending = kept
        return sorted(granted)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` can next grant something, or None when nothing waits.

        The time may be in the past: poll now. A :meth:`released` call can make
        a bucket free earlier; poll again after one.
        """
        deadline: float | None = None
        seen: set[int] = set()
        for _, shard_id in self._pending:
            key = self.rate_limit_key(shard_id)
            if key in seen:
                continue
            seen.add(key)
            at = self._bucket_free_at(key)
            if deadline is None or at < deadline:
                deadline = at
        if deadline is None:
            return None
        if self._remaining is not None and self._remaining <= 0:
            assert self._resets_at is not None
            deadline = max(deadline, self._resets_at)
        return deadline

    # -- internals -------------------------------------------------------------------

    def _bucket_free_at(self, key: int) -> float:
        last = self._granted_at.get(key)
        free_at = float("-inf") if last is None else last + IDENTIFY_INTERVAL
        held = self._in_flight.get(key)
        if held is not None:
            free_at = max(free_at, held[1] + self._answer_timeout)
        return free_at

    def _apply_reset(self, now: float) -> None:
        if self._resets_at is None or self._remaining is None:
            return
        if now >= self._resets_at:
            assert self._total is not None
            periods = (now - self._resets_at) // _LIMIT_PERIOD + 1
            self._remaining = self._total
            self._resets_at += periods * _LIMIT_PERIOD
