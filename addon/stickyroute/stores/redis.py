"""The Redis store: pins shared by several proxies, first writer wins a new conversation.

What is kept under which key: redislayout.py. Chain and health writes are queued and sent
together soon after (one pipeline per loop turn), so another proxy can follow a chain a moment
after the response that started it.

Redis is a second level behind the local PinTable and never a place a request waits long:
every call has a timeout of tens of milliseconds; on failure the store goes "down", answers
None at once, queues what changed, and a background tick reconnects with backoff and pushes
the queue (first writer still wins) when Redis is back. Values never hold a credential.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from stickyroute.core.pins import Pin
from stickyroute.log import get_logger

from .base import Local
from .redislayout import PIN_SCRIPT, Keys, parse_pin_value, pin_value

logger = get_logger(__name__)

DOWN_AFTER = 2  # consecutive failed calls before the store counts Redis as down
BACKOFF = (0.5, 30.0)
BATCH = 1000  # pins per pipeline when flushing
MAX_WRITES = 100_000  # queued chain/health writes kept while Redis is down (newer ones dropped)
# A request waits about `timeout` (sticky_store_timeout) for Redis. Time the event loop itself
# spent elsewhere (a burst of TLS handshakes can hold it for 100+ ms) is not held against
# Redis, up to HARD_TIMEOUT.
TIMEOUT = 0.1
HARD_TIMEOUT = 0.5

class RedisStore:
    kind = "redis"
    shared = True

    def __init__(self, url: str, prefix: str = "stickyroute:",
                 clock: Callable[[], float] = time.monotonic, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.timeout = min(timeout, HARD_TIMEOUT)
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.clock = clock  # monotonic, for backoff only; pin times come from the caller
        self.idle_timeout = 3600.0
        self.max_age = 86400.0
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=HARD_TIMEOUT, socket_connect_timeout=HARD_TIMEOUT,
            retry=Retry(NoBackoff(), 0), health_check_interval=0, decode_responses=True,
            lib_name=None, lib_version=None)  # no CLIENT SETINFO round trips on connect
        self._sha: str | None = None
        self.up = True
        self._failures = 0
        self._retry_at = 0.0
        self._backoff = BACKOFF[0]
        self._touched: dict[str, Pin] = {}  # refresh TTL (or re-push) at the next flush
        self._moved: dict[str, Pin] = {}  # overwrite at the next flush
        self._removed: set[str] = set()
        self._writes: list[tuple[str, str, str | int]] = []  # chain: SET, health: HSET
        self._sending = False  # a send of the queued writes is scheduled
        self._counts: dict[str, int] = {}
        self._claims: list[tuple[Pin, asyncio.Future[Any]]] = []  # sent together, next turn
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.adopted = 0  # pins this proxy had to give up to another proxy's claim

    # ---- plumbing ------------------------------------------------------------------------
    async def _call[T](self, job: Callable[[], Awaitable[T]], probe: bool = False) -> T | None:
        """Run one Redis call within the timeout; None when Redis is down or too slow.

        While down only the background tick probes (with backoff): requests never wait.
        """
        if not self.up and not probe:
            return None
        try:
            if self._sha is None:
                self._sha = await within(self.client.script_load(PIN_SCRIPT), self.timeout)
            result = await within(job(), self.timeout)
            self._failures = 0
            return result
        except NoScriptError:
            self._sha = None  # a restarted server: load it again next time
            return None
        except (aioredis.RedisError, OSError, TimeoutError) as e:
            self._went_down(e)
            return None

    def _went_down(self, error: BaseException) -> None:
        """One slow answer is not an outage (that request routes from memory); a second in a
        row, or a probe that fails, is."""
        self._failures += 1
        if self.up and self._failures >= DOWN_AFTER:
            logger.warning("store: redis %s unavailable (%s); routing from local "
                           "memory and retrying in the background", self._where(),
                           type(error).__name__ or error)
            self._backoff = BACKOFF[0]
            self.up = False
            self._sha = None
            self._retry_at = self.clock() + self._backoff

    def _spawn(self, job: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(job())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _where(self) -> str:
        return self.url.split("@")[-1]  # never log a password in the URL

    def _args(self, pin: Pin, now: float, mode: str) -> list[Any]:
        return [pin_value(pin), int(self.idle_timeout * 1000), self.max_age, now,
                self.keys.sessions_prefix, pin.session, mode]

    # ---- lifecycle -----------------------------------------------------------------------
    def open(self, local: Local, now: float) -> None:
        self.idle_timeout, self.max_age = local.pins.idle_timeout, local.pins.max_age
        logger.info("store: redis %s (prefix %r)", self._where(), self.prefix)

    async def tick(self, local: Local, now: float) -> None:
        self.idle_timeout, self.max_age = local.pins.idle_timeout, local.pins.max_age
        was_up = self.up
        if not self.up and self.clock() < self._retry_at:
            return
        if await self._call(self.client.ping, probe=True) is None:
            if not was_up:
                self._backoff = min(self._backoff * 2, BACKOFF[1])
                self._retry_at = self.clock() + self._backoff
            return
        if not was_up:
            self.up = True
            self._touched.update({p.session: p for p in local.pins})  # re-sync all we know
            logger.info("store: redis %s is back; re-syncing %d local pins",
                        self._where(), len(self._touched))
        await self.flush(local, now)
        await self._refresh_counts(local, now)

    async def close(self, local: Local, now: float) -> None:
        await self.flush(local, now)
        await self.client.aclose()

    # ---- pins ----------------------------------------------------------------------------
    async def claim(self, pin: Pin) -> tuple[Pin, bool] | None:
        if not self.up:
            return None
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._claims.append((pin, answer))
        if len(self._claims) == 1:  # claims of one loop turn share one pipeline round trip
            asyncio.get_running_loop().call_soon(self._spawn, self._send_claims)
        result = await answer
        if result is None:
            return None
        value, new = result
        if new:
            self._counts[pin.alias] = self._counts.get(pin.alias, 0) + 1
            return pin, True
        alias, created = parse_pin_value(value)
        return Pin(pin.session, alias, created=created, last_used=pin.last_used), False

    async def _send_claims(self) -> None:
        batch, self._claims = self._claims, []
        claims = [(pin, "claim") for pin, _ in batch]
        answers = None
        try:
            answers = await self._call(
                functools.partial(self._pipeline, claims, [], [], batch[0][0].created))
        finally:
            for i, (_, answer) in enumerate(batch):
                answer.set_result(answers[i] if answers is not None else None)

    def changed(self, pin: Pin | None, how: str) -> None:
        if pin is None:
            return
        if how == "hit":
            self._touched[pin.session] = pin
        elif how == "new":  # usually claimed already; pushed again if Redis was down
            self._touched[pin.session] = pin
        elif how == "moved":
            self._moved[pin.session] = pin
            self._touched.pop(pin.session, None)
        elif how == "removed":
            self._removed.add(pin.session)
            self._touched.pop(pin.session, None)
            self._moved.pop(pin.session, None)

    async def flush(self, local: Local, now: float) -> None:
        """One pipeline per BATCH pins: refresh or re-push touched pins, write moves and
        removals; a pin another proxy won meanwhile replaces ours locally."""
        while self.up and (self._touched or self._moved or self._removed or self._writes):
            batch = [(p, "claim") for p in _take(self._touched, BATCH)]
            batch += [(p, "put") for p in _take(self._moved, BATCH - len(batch))]
            removed = [self._removed.pop() for _ in range(min(len(self._removed), BATCH))]
            writes, self._writes = self._writes[:BATCH], self._writes[BATCH:]
            answers = await self._call(functools.partial(self._pipeline, batch, removed,
                                                         writes, now))
            if answers is None:  # down: keep it all for the re-sync
                self._touched.update({p.session: p for p, mode in batch if mode == "claim"})
                self._moved.update({p.session: p for p, mode in batch if mode == "put"})
                self._removed.update(removed)
                self._writes[:0] = writes
                return
            for (pin, _), (value, _new) in zip(batch, answers, strict=False):
                alias, _created = parse_pin_value(value)
                if alias != pin.alias and local.pins.get(pin.session, now) is pin:
                    local.pins.put(pin.session, alias, now)  # the first writer won
                    self.adopted += 1

    async def _pipeline(self, batch: list[tuple[Pin, str]], removed: list[str],
                        writes: list[tuple[str, str, str | int]], now: float) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for pin, mode in batch:
                pipe.evalsha(self._sha or "", 1, self.keys.pin(pin.session),
                             *self._args(pin, now, mode))
            for session in removed:
                pipe.delete(self.keys.pin(session))
            for key, field, value in writes:
                if isinstance(value, int):
                    pipe.set(key, field, px=max(value, 1))
                else:
                    pipe.hset(key, field, value)
            results = await pipe.execute()
        return results[:len(batch)]

    async def _refresh_counts(self, local: Local, now: float) -> None:
        aliases = sorted(set(local.aliases) | set(local.pins.sessions_per_alias()))

        async def counts() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for alias in aliases:
                    pipe.zremrangebyscore(self.keys.sessions(alias), "-inf", now)
                    pipe.zcard(self.keys.sessions(alias))
                return await pipe.execute()

        answers = await self._call(counts)
        if answers is not None:
            self._counts = {a: int(n) for a, n in zip(aliases, answers[1::2], strict=True)}

    def shared_sessions(self) -> Mapping[str, int] | None:
        return self._counts

    # ---- chains and health (shared) ------------------------------------------------------
    def save_chain(self, key: str, session: str, alias: str, ttl: float) -> None:
        if len(self._writes) < MAX_WRITES:
            self._writes.append((self.keys.chain(key),
                                 json.dumps([session, alias], separators=(",", ":")),
                                 int(ttl * 1000)))
            self._send_soon()

    async def load_chain(self, key: str) -> tuple[str, str] | None:
        value = await self._call(lambda: self.client.get(self.keys.chain(key)))
        try:
            session, alias = json.loads(value) if value is not None else (None, None)
        except (TypeError, ValueError):
            return None
        if isinstance(session, str) and isinstance(alias, str):
            return session, alias
        return None

    def save_health(self, alias: str, state: Mapping[str, Any]) -> None:
        self._writes.append((self.keys.health, alias,
                             json.dumps(dict(state), separators=(",", ":"))))
        self._send_soon()

    def _send_soon(self) -> None:
        """Send the queued writes in a moment, all of one loop turn in one pipeline."""
        if self._sending or not self.up:
            return  # while down the tick re-sends them after reconnecting
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test): the next flush sends them
        self._sending = True
        loop.call_soon(self._spawn, self._send_writes)

    async def _send_writes(self) -> None:
        self._sending = False
        writes, self._writes = self._writes[:BATCH], self._writes[BATCH:]
        if not writes:
            return
        if await self._call(functools.partial(self._pipeline, [], [], writes, 0.0)) is None:
            self._writes[:0] = writes  # down or slow: the tick tries again
        elif self._writes:
            self._send_soon()

    async def load_health(self) -> dict[str, dict[str, Any]]:
        raw = await self._call(lambda: self.client.hgetall(self.keys.health))
        out: dict[str, dict[str, Any]] = {}
        for alias, value in (raw or {}).items():
            try:
                out[str(alias)] = json.loads(value)
            except ValueError:
                continue
        return out


def _take(pending: dict[str, Pin], n: int) -> list[Pin]:
    out: list[Pin] = []
    while pending and len(out) < n:
        out.append(pending.pop(next(iter(pending))))
    return out


async def within[T](job: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """`job` within `timeout` of Redis time: while our own timer fires late (the loop was busy),
    the wait is extended, never past HARD_TIMEOUT."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(job)
    hard = loop.time() + HARD_TIMEOUT
    while True:
        started = loop.time()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            return task.result()
        now = loop.time()
        if now - started - timeout < timeout / 2 or now >= hard:
            task.cancel()
            raise TimeoutError("redis did not answer in time")
