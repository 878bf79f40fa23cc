"""Step 3, when accounts are unwell: which accounts may serve given their health, why none can,
and how a conversation that must move sheds the state its old account sealed.

Pure: the caller passes the health table and the clock's `now`. Messages name accounts and
reasons, never a credential.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

from stickyroute.config.accounts import Account

from . import rewrite
from .choose import Decision
from .errors import NoAccount
from .health import Health
from .identify import SessionId
from .pins import Pin

FOREIGN = "foreign_reasoning"  # Pin.extra: keys of reasoning items another account encrypted


def pools(accounts: Sequence[Account], health: Health, now: float,
          exclude: Collection[str] = ()) -> tuple[list[Account], list[Account]]:
    """(accounts that may serve now, those of them a NEW session should prefer)."""
    ready = [a for a in accounts if a.alias not in exclude and health.available(a.alias, now)]
    return ready, [a for a in ready if health.takes_new(a.alias, now)]


def _state(health: Health, alias: str, now: float) -> str:
    d = health.describe(alias, now)
    text = f"{alias} {d.state}" + (f" ({d.reason})" if d.reason else "")
    if d.until is not None and d.until - now >= 60:  # a window's reset: say when, in UTC
        text += f" until {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(d.until))}"
    return text


def explain(e: NoAccount, health: Health, accounts: Sequence[Account], pinned: str | None,
            session: SessionId | None, fallback: str, now: float) -> NoAccount:
    """NoAccount with the accounts' states; 429 + Retry-After when waiting will help.

    A request that waits for its pinned account (hard pin, or sticky_fallback=fail) hears
    about that account; any other about all of them.
    """
    if pinned is not None and session is not None and (session.hard or fallback == "fail"):
        message = f"{e.message}: {_state(health, pinned, now)}"
        wait = health.retry_after([pinned], now)
    else:
        aliases = [a.alias for a in accounts]
        states = "; ".join(_state(health, a, now) for a in aliases) or "none configured"
        message = f"{e.message} ({states})"
        wait = health.retry_after(aliases, now)
    if wait is None:
        return replace(e, message=message)
    seconds = max(1, math.ceil(wait))
    return replace(e, message=f"{message}; retry in {seconds} s", status=429,
                   code="account_cooling_down", retry_after=seconds)


def decide_or_move(decide_one: Callable[[SessionId | None], Decision],
                   session: SessionId | None, portable: bool) -> tuple[Decision, SessionId | None]:
    """decide(), and when a hard pin cannot be served but its only account-bound state is
    encrypted reasoning (`portable`), decide again for it as a soft pin: it moves, and
    drop_foreign_reasoning takes that state out of the request."""
    try:
        return decide_one(session), session
    except NoAccount:
        if session is None or not session.hard or not portable:
            raise
        soft = session._replace(hard=False)
        return decide_one(soft), soft


def portable(body: dict[str, Any] | None, fallback: str) -> bool:
    """May a hard-pinned Responses request move (sticky_fallback=rotate, reasoning only)?"""
    return fallback == "rotate" and rewrite.state_is_portable(body)


def drop_foreign_reasoning(body: dict[str, Any], pin: Pin | None, moved: bool
                           ) -> tuple[dict[str, Any], list[str]]:
    """On a move, every encrypted reasoning item goes (the new account cannot read them);
    later turns drop those the pin remembers (the client keeps sending them). Returns the
    body and the keys of the items dropped (on a move, what the new pin must remember)."""
    if moved:
        return rewrite.drop_encrypted_reasoning(body)
    known = pin.extra.get(FOREIGN) if pin is not None and pin.extra else None
    if not isinstance(known, set):
        return body, []
    return rewrite.drop_encrypted_reasoning(body, known)
