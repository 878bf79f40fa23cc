"""OAuth logins shared by several proxies through Redis: a refresh lock and the latest tokens.

One proxy refreshes a login at a time: it holds `login-lock:<alias>` (SET NX with a TTL, so a
proxy that dies holding it blocks the others for the TTL at most; only its owner deletes it).
It publishes the new tokens to `login:<alias>` with a compare-and-set on the refresh token it
spent (compared by SHA-256): a proxy whose lock ran out while it waited on the token endpoint
cannot overwrite a newer login. The others read `login:<alias>` and take tokens newer than
theirs; a login that died is published with its reason, so no other proxy spends its dead
refresh token again.

`login:<alias>` holds the login's tokens: the Redis server must be as private as the login
files (AUTH, TLS, a private network). No mitmproxy import; the refresher calls this.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable
from typing import Any, cast

import redis.asyncio as aioredis

from stickyroute.config.oauth import Tokens

from .base import Store
from .redis import RedisStore
from .redislayout import Keys
from .refresher import SharedLogin, TokenShare

# KEYS[1] login key. ARGV: sha of the spent refresh token, sha of the new one, tokens JSON,
# revoked reason ('' when alive). Returns 1 when stored, 0 when a newer login is there.
# A live login replaces a dead one whatever it spent: only a refresh token the provider still
# took can have produced it (a new login, imported after the old one died).
PUBLISH_SCRIPT = """
local cur = redis.call('HGET', KEYS[1], 'rt')
local dead = redis.call('HGET', KEYS[1], 'revoked')
local replaces_dead = dead and dead ~= '' and ARGV[4] == ''
if cur and cur ~= ARGV[1] and cur ~= ARGV[2] and not replaces_dead then return 0 end
redis.call('HSET', KEYS[1], 'rt', ARGV[2], 'tokens', ARGV[3], 'revoked', ARGV[4])
return 1
"""
# KEYS[1] lock key, ARGV[1] owner: delete the lock only if we still own it.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTokenShare:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client  # decode_responses=True, as the Redis store makes it
        self.keys = keys

    async def acquire(self, alias: str, owner: str, ttl: float) -> bool:
        done = await self.client.set(self.keys.login_lock(alias), owner, nx=True,
                                     px=max(1, int(ttl * 1000)))
        return bool(done)

    async def release(self, alias: str, owner: str) -> None:
        await self.client.eval(RELEASE_SCRIPT, 1, self.keys.login_lock(alias), owner)

    async def load(self, alias: str) -> SharedLogin | None:
        # redis-py types hgetall for its sync and async clients at once: the async one awaits
        data = await cast(Awaitable[dict[str, str]], self.client.hgetall(self.keys.login(alias)))
        return parse_shared(data) if data else None

    async def publish(self, alias: str, spent: str, login: SharedLogin) -> bool:
        done = await self.client.eval(
            PUBLISH_SCRIPT, 1, self.keys.login(alias), _sha(spent),
            _sha(login.tokens.refresh_token), json.dumps(tokens_value(login.tokens)),
            login.revoked or "")
        return bool(done)


def share_for(store: Store) -> TokenShare | None:
    """The token share that goes with a store: Redis shares logins, the others do not."""
    if isinstance(store, RedisStore):
        return RedisTokenShare(store.client, store.keys)
    return None


def tokens_value(tokens: Tokens) -> dict[str, Any]:
    return {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
            "expires_at": tokens.expires_at, "id_token": tokens.id_token,
            "account_id": tokens.account_id}


def parse_shared(data: dict[str, str]) -> SharedLogin | None:
    """A stored login; None for anything broken (then it is ignored, never half-used)."""
    try:
        raw = json.loads(data["tokens"])
        access, refresh = raw["access_token"], raw["refresh_token"]
        if not isinstance(access, str) or not isinstance(refresh, str) or not access:
            return None
        expires = raw.get("expires_at")
        tokens = Tokens(access, refresh,
                        float(expires) if isinstance(expires, int | float) else None,
                        raw.get("id_token") if isinstance(raw.get("id_token"), str) else None,
                        raw.get("account_id") if isinstance(raw.get("account_id"), str)
                        else None)
    except (KeyError, ValueError, TypeError):
        return None
    return SharedLogin(tokens, data.get("revoked") or None)


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
