"""Refreshing OAuth logins: one refresh per login at a time, saved before it is used.

A refresh token is single-use: sending one twice makes the provider revoke the whole login.
So, per account, at most one refresh runs in this proxy (callers that come while it runs await
its result), a refresh whose token was already replaced is not sent again (the caller gets the
current tokens), and the new tokens are written to the account's oauth_file before anything
signs with them (a restart then starts from the newest refresh token). With a TokenShare
(Redis), one proxy refreshes under a lock and the others take its tokens from the share; this
proxy never refreshes without the lock while a share is configured.

Each refresh runs in a task of its own: a caller that goes away (a client disconnects, a
background task is cancelled) never cuts a POST whose refresh token is already spent.

The HTTP POST is injected (`Post`); `tornado_post` is the real one. No mitmproxy import; the
clock is injected. A token never appears in a log line or a reason.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from stickyroute.config.accounts import Account
from stickyroute.config.loginfile import LoginDoc, blank_login, read_login, write_login
from stickyroute.config.oauth import LoginSource, Tokens
from stickyroute.core.logins import Login, Logins
from stickyroute.core.oauth import (
    Failure,
    RefreshFailed,
    TokenRequest,
    classify_failure,
    fingerprint,
    is_newer,
    read_answer,
    refresh_request,
)
from stickyroute.log import get_logger

logger = get_logger(__name__)

TIMEOUT = 30.0  # seconds one POST to a token endpoint may take
LOCK_TTL = 2 * TIMEOUT  # a proxy that dies holding the lock blocks the others this long at most
WAIT_POLL = 0.2  # seconds between looks at the share while another proxy refreshes

# (request, timeout) -> (status, body); raises OSError or TimeoutError when nothing came back.
Post = Callable[[TokenRequest, float], Awaitable[tuple[int, bytes]]]
# (source, tokens, now): make the login file hold these tokens (raises OSError).
Save = Callable[[LoginSource, Tokens, float], None]
# source -> the tokens the login file holds now (raises ValueError).
Load = Callable[[LoginSource], Tokens]


class TokenShare(Protocol):
    """Tokens shared by several proxies (Redis): a lock per login, compare-and-set publish."""

    async def acquire(self, alias: str, owner: str, ttl: float) -> bool: ...

    async def release(self, alias: str, owner: str) -> None: ...

    async def load(self, alias: str) -> SharedLogin | None: ...

    async def publish(self, alias: str, spent: str, login: SharedLogin) -> bool:
        """Store `login` if the refresh token the share holds is `spent` (or none); False: not."""
        ...


@dataclass(frozen=True)
class SharedLogin:
    tokens: Tokens
    revoked: str | None = None  # the refresh of these tokens' refresh token failed for good


class Refresher:
    def __init__(self, logins: Logins, post: Post, *, save: Save | None = None,
                 load: Load | None = None, share: TokenShare | None = None,
                 clock: Callable[[], float] = time.time, timeout: float = TIMEOUT,
                 poll: float = WAIT_POLL) -> None:
        self.logins = logins
        self.post = post
        self.save = save or save_to_file
        self.load = load or load_from_file
        self.share = share
        self.clock = clock
        self.timeout = timeout
        self.poll = poll
        self.owner = secrets.token_hex(8)  # this proxy, as the share's lock holder
        self._pending: dict[str, asyncio.Task[Tokens | RefreshFailed]] = {}

    def running(self, alias: str) -> bool:
        return alias in self._pending

    async def drain(self) -> None:
        """Wait for the refreshes in flight (at shutdown: a spent refresh token whose answer
        is not saved yet would leave the next start with a dead login)."""
        while self._pending:
            await asyncio.wait(list(self._pending.values()))

    async def refresh(self, alias: str, stale: str | None = None) -> Tokens | RefreshFailed:
        """Fresh tokens for this login, or why there are none.

        `stale`: the fingerprint of the access token the provider just refused (the reactive
        path; core.oauth.fingerprint). When the held token is another one, it was replaced
        meanwhile: no refresh, the caller signs again with the current one.
        """
        login = self.logins.get(alias)
        if login is None:
            return RefreshFailed(Failure.DEAD, "no OAuth login for this account")
        if login.revoked is not None:
            return RefreshFailed(Failure.DEAD, login.revoked)
        if stale is not None and fingerprint(login.tokens.access_token) != stale:
            return login.tokens
        pending = self._pending.get(alias)
        if pending is None:
            pending = self._pending[alias] = asyncio.get_running_loop().create_task(
                self._settle(login), name=f"stickyroute login refresh {alias}")
            pending.add_done_callback(self._forget)
        return await asyncio.shield(pending)

    async def _settle(self, login: Login) -> Tokens | RefreshFailed:
        try:
            return await self._refresh(login)
        except Exception:
            logger.exception("%s: refreshing the login failed", login.alias)
            result = RefreshFailed(Failure.RETRY, "the refresh failed unexpectedly")
            self.logins.failed(login.alias, result, self.clock())
            return result
        finally:  # at once: a caller that comes next starts from what this one left
            self._pending.pop(login.alias, None)

    def _forget(self, task: asyncio.Task[Tokens | RefreshFailed]) -> None:
        """A task cancelled before it ran never reached its finally."""
        for alias, pending in list(self._pending.items()):
            if pending is task:
                del self._pending[alias]

    async def refresh_due(self, margin: float) -> dict[str, Tokens | RefreshFailed]:
        """Refresh every login due now (the background task calls this); never raises."""
        due = self.logins.due(self.clock(), margin)
        results = await asyncio.gather(*(self.refresh(login.alias) for login in due))
        return {login.alias: r for login, r in zip(due, results, strict=True)}

    async def revive(self, accounts: Iterable[Account]) -> list[str]:
        """Dead or missing logins that have a new login now: in their file (a new import, a
        CLI that logged in again) or, with a share, one another proxy published. Returns the
        aliases that came back. Never raises; never refreshes."""
        back: list[str] = []
        for account in accounts:
            if account.oauth is None:
                continue
            login = self.logins.get(account.alias)
            if login is not None and login.revoked is None:
                continue
            try:
                if await self._revive(account.alias, account.oauth, login):
                    back.append(account.alias)
            except Exception as e:
                logger.warning("%s: could not look for a new login (%s)", account.alias,
                               type(e).__name__)
        return back

    async def _revive(self, alias: str, source: LoginSource, login: Login | None) -> bool:
        try:
            tokens = await asyncio.to_thread(self.load, source)
        except (OSError, ValueError):
            tokens = None
        if tokens is not None and (login is None or is_newer(tokens, login.tokens)):
            self.logins.seed(alias, source, tokens)
            logger.info("%s: took the login in %s", alias, source.file)
            return True
        if login is None or self.share is None:
            return False
        shared = await self.share.load(alias)
        if shared is None or shared.revoked is not None or not is_newer(shared.tokens,
                                                                        login.tokens):
            return False
        await self._save_quietly(login, shared.tokens)
        self.logins.adopt(alias, shared.tokens, self.clock())
        logger.info("%s: took the new login another proxy shared", alias)
        return True

    # ---- one refresh ------------------------------------------------------------------------
    async def _refresh(self, login: Login) -> Tokens | RefreshFailed:
        alias = login.alias
        on_disk = await self._newer_on_disk(login)
        if on_disk is not None:
            return on_disk
        if self.share is None:
            return await self._exchange(login)
        try:
            shared = await self._from_share(login)
            if shared is not None:
                return shared
            got = await self.share.acquire(alias, self.owner, LOCK_TTL)
        except Exception as e:
            return self._failed(login, f"the shared store is unreachable ({type(e).__name__}); "
                                       "not refreshing without its lock")
        if not got:
            return await self._wait_for_other(login)
        return await self._exchange_locked(login)

    async def _exchange_locked(self, login: Login) -> Tokens | RefreshFailed:
        """Holding the share's lock: exchange, publish what came of it, release."""
        assert self.share is not None
        alias, held = login.alias, login.tokens
        try:
            try:
                shared = await self._from_share(login)  # published just before the lock was free
            except Exception as e:
                return self._failed(login, f"the shared store is unreachable "
                                           f"({type(e).__name__}); not refreshing")
            if shared is not None:
                return shared
            result = await self._exchange(login)
            if isinstance(result, Tokens):
                await self._publish(alias, held, SharedLogin(result))
            elif result.kind is Failure.DEAD:
                await self._publish(alias, held, SharedLogin(held, result.reason))
            return result
        finally:
            try:
                await self.share.release(alias, self.owner)
            except Exception as e:  # the lock's TTL frees it
                logger.warning("%s: could not release the refresh lock (%s)", alias,
                               type(e).__name__)

    async def _exchange(self, login: Login) -> Tokens | RefreshFailed:
        """Spend the refresh token: POST, then save the answer before anyone uses it."""
        alias, old = login.alias, login.tokens
        request = refresh_request(login.source, old)
        try:
            status, body = await self.post(request, self.timeout)
        except (OSError, TimeoutError) as e:
            failure = classify_failure(None, None)
            logger.warning("%s: login refresh: %s (%s); retrying later", alias,
                           failure.reason, type(e).__name__)
            self.logins.failed(alias, failure, self.clock())
            return failure
        now = self.clock()
        result = read_answer(login.source.provider, status, body, old, now)
        if isinstance(result, RefreshFailed):
            self.logins.failed(alias, result, now)
            if result.kind is Failure.DEAD:
                logger.error("%s: the login is dead: %s", alias, result.reason)
            else:
                logger.warning("%s: login refresh: %s; retrying later", alias,
                               result.reason)
            return result
        try:
            await asyncio.to_thread(self.save, login.source, result, now)
        except (OSError, ValueError) as e:
            # The old refresh token is spent: the new tokens are the only ones that work.
            logger.error("%s: could not save the refreshed login to %s (%s): "
                         "using it anyway; a restart before the next refresh needs a new login",
                         alias, login.source.file, type(e).__name__)
        self.logins.refreshed(alias, result, now)
        logger.info("%s: login refreshed, valid for %s", alias,
                    _lifetime(result, now))
        return result

    async def _newer_on_disk(self, login: Login) -> Tokens | None:
        """Newer tokens in the file (a new import, a proxy sharing the file): take them."""
        try:
            tokens = await asyncio.to_thread(self.load, login.source)
        except (OSError, ValueError):
            return None
        if not self.logins.adopt(login.alias, tokens, self.clock()):
            return None
        logger.info("%s: took newer tokens from %s", login.alias, login.source.file)
        return tokens

    async def _from_share(self, login: Login) -> Tokens | RefreshFailed | None:
        """What another proxy published for this login, if it supersedes what we hold."""
        assert self.share is not None
        shared = await self.share.load(login.alias)
        if shared is None:
            return None
        if shared.revoked is not None:
            if shared.tokens.refresh_token == login.tokens.refresh_token:
                failure = RefreshFailed(Failure.DEAD, shared.revoked)
                self.logins.failed(login.alias, failure, self.clock())
                return failure
            return None
        if not is_newer(shared.tokens, login.tokens):
            return None
        await self._save_quietly(login, shared.tokens)
        self.logins.adopt(login.alias, shared.tokens, self.clock())
        logger.info("%s: took the login another proxy refreshed", login.alias)
        return shared.tokens

    async def _save_quietly(self, login: Login, tokens: Tokens) -> None:
        """Write tokens another proxy got to our file (a restart starts from them)."""
        try:
            await asyncio.to_thread(self.save, login.source, tokens, self.clock())
        except (OSError, ValueError) as e:
            logger.error("%s: could not save the shared login to %s (%s)",
                         login.alias, login.source.file, type(e).__name__)

    async def _wait_for_other(self, login: Login) -> Tokens | RefreshFailed:
        """Another proxy holds the lock: wait for its tokens, or for the lock to come free."""
        assert self.share is not None
        deadline = self.clock() + LOCK_TTL
        while self.clock() < deadline:
            await asyncio.sleep(self.poll)
            try:
                shared = await self._from_share(login)
                if shared is not None:
                    return shared
                got = await self.share.acquire(login.alias, self.owner, LOCK_TTL)
            except Exception as e:
                return self._failed(login, f"the shared store is unreachable "
                                           f"({type(e).__name__}); not refreshing without its "
                                           "lock")
            if got:  # the holder gave up without news (its try failed): try ourselves
                return await self._exchange_locked(login)
        return self._failed(login, "another proxy holds the refresh lock and published nothing")

    async def _publish(self, alias: str, spent: Tokens, shared: SharedLogin) -> None:
        assert self.share is not None
        try:
            if not await self.share.publish(alias, spent.refresh_token, shared):
                logger.warning("%s: another proxy published a different login "
                               "meanwhile; keeping ours", alias)
        except Exception as e:
            logger.warning("%s: could not share the refreshed login (%s)", alias,
                           type(e).__name__)

    def _failed(self, login: Login, reason: str) -> RefreshFailed:
        failure = RefreshFailed(Failure.RETRY, reason)
        self.logins.failed(login.alias, failure, self.clock())
        logger.warning("%s: login refresh: %s", login.alias, reason)
        return failure


def _lifetime(tokens: Tokens, now: float) -> str:
    if tokens.expires_at is None:
        return "an unknown time"
    return f"{max(0, round(tokens.expires_at - now))} s"


# ---- the login file ---------------------------------------------------------------------------
def seed_logins(logins: Logins, accounts: Iterable[Account]) -> list[str]:
    """Load the login of every OAuth account (at start and after each accounts-file reload).

    Keeps what is held when the file is not newer; forgets accounts no longer configured.
    Returns the aliases that have no usable login (their file cannot be read now).
    """
    missing: list[str] = []
    aliases: list[str] = []
    for account in accounts:
        if account.oauth is None:
            continue
        aliases.append(account.alias)
        try:
            tokens = read_login(account.oauth.file).tokens
        except ValueError as e:
            held = logins.get(account.alias)
            if held is None:
                missing.append(account.alias)
            logger.warning("%s: %s%s", account.alias, e,
                           "; keeping the login held in memory" if held else "")
            continue
        logins.seed(account.alias, account.oauth, tokens)
    logins.retain(aliases)
    return missing


def save_to_file(source: LoginSource, tokens: Tokens, now: float) -> None:
    """Rewrite the login file with new tokens, keeping its shape and other keys."""
    try:
        doc: LoginDoc = read_login(source.file)
    except ValueError:
        doc = blank_login(source.provider)  # gone or broken: write a clean login
    write_login(source.file, doc, tokens, now)


def load_from_file(source: LoginSource) -> Tokens:
    return read_login(source.file).tokens


# ---- the real POST ----------------------------------------------------------------------------
async def tornado_post(request: TokenRequest, timeout: float) -> tuple[int, bytes]:
    """POST with tornado's asyncio HTTP client (mitmproxy ships it); OSError when no answer.

    Proxy variables are ignored: the shell that starts mitmdump often points HTTPS_PROXY at
    mitmdump itself. Certificates are checked against certifi's bundle, the one mitmproxy
    checks upstream servers with. The request never becomes a flow, so no saved flow or
    mitmweb view can show the tokens it carries.
    """
    import certifi
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

    client = AsyncHTTPClient(force_instance=True)
    try:
        answer = await client.fetch(
            HTTPRequest(request.url, method="POST", headers=dict(request.headers),
                        body=request.body, connect_timeout=timeout, request_timeout=timeout,
                        follow_redirects=False, decompress_response=True,
                        ca_certs=certifi.where()),
            raise_error=False)
    except HTTPClientError as e:  # 599: no answer (timeout, connection refused, TLS)
        raise OSError(f"no answer from the token endpoint ({e.code})") from None
    finally:
        client.close()
    if answer.code == 599:
        raise OSError(f"no answer from the token endpoint ({type(answer.error).__name__})")
    return answer.code, answer.body or b""
