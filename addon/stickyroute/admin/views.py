"""What an operator sees and steers: account and session views, eviction, command lines.

Read by the admin API, the metrics and the commands, from the State. Views are built field by
field from attributes that are not secret; an Account object is never serialised whole, so no
credential can leak through a view.
"""

from __future__ import annotations

from typing import Any

from stickyroute.config.accounts import Account
from stickyroute.core.health import HealthView
from stickyroute.core.identify import SHORT, key_value
from stickyroute.core.ledger import cache_percent
from stickyroute.core.pins import Pin
from stickyroute.state import State


def health_view(health: HealthView) -> dict[str, Any]:
    """{"state": healthy|cooling|disabled, "reason": str|None, "until": float|None}."""
    return {"state": health.state.value, "reason": health.reason, "until": health.until}


def account_view(state: State, account: Account, now: float) -> dict[str, Any]:
    stats = state.ledger[account.alias]
    health = state.health.describe(account.alias, now)
    windows = state.windows
    return {
        "alias": account.alias,
        "provider": account.provider,
        "enabled": account.enabled,
        "weight": account.weight,
        "hosts": list(account.hosts),
        "health": health_view(health),
        "cooldown_left": max(0.0, health.until - now) if health.until else 0.0,
        "sessions": state.pins.sessions_per_alias().get(account.alias, 0),
        "inflight": stats.inflight,
        "requests": stats.requests,
        "affinity": dict(stats.affinity),
        "tokens_in": stats.tokens_in,
        "tokens_out": stats.tokens_out,
        "tokens_cached": stats.tokens_cached,
        "cache_percent": stats.cache_percent,
        "cost_usd": stats.cost_micros / 1e6,
        "affinity_breaks": stats.affinity_breaks,
        "errors": stats.errors,
        # a subscription account's login: state and timing, never a token (null: an API key)
        "login": state.logins.view(account.alias, now) if account.oauth is not None else None,
        "windows": [w.as_dict() for w in windows.windows(account.alias, now)],
        "draining": windows.draining(account.alias, now),
        "usage_state": windows.state(account.alias, now).value,  # ok | draining | limited
        "warm_prefixes": state.warm.count(account.alias),
    }


def accounts_view(state: State, now: float) -> list[dict[str, Any]]:
    return [account_view(state, a, now) for a in state.accounts.accounts]


def session_view(pin: Pin, now: float) -> dict[str, Any]:
    return {
        "id": pin.session,
        "short": key_value(pin.session)[-SHORT:],
        "alias": pin.alias,
        "created": pin.created,
        "last_used": pin.last_used,
        "idle": max(0.0, now - pin.last_used),
        "requests": pin.requests,
        "tokens_in": pin.tokens_in,
        "tokens_out": pin.tokens_out,
        "tokens_cached": pin.tokens_cached,
        "cache_percent": cache_percent(pin.tokens_cached, pin.tokens_in),
        "cost_usd": pin.cost_micros / 1e6,
        "moves": pin.moves,
    }


def find_sessions(state: State, ident: str) -> list[Pin]:
    """Pins named by a full key, else by the client's own id, else by the 8-character short
    form log lines show (which may name several clients' sessions)."""
    pin = state.pins.get(ident, state.clock())
    if pin is not None:
        return [pin]
    value = [p for p in state.pins if key_value(p.session) == ident]
    if value:
        return value
    if len(ident) == SHORT:
        return [p for p in state.pins if key_value(p.session).endswith(ident)]
    return []


def evict(state: State, ident: str) -> list[str]:
    """Forget the pins named by ident; their next request is re-pinned. Returns their keys."""
    keys = [p.session for p in find_sessions(state, ident)]
    for key in keys:
        state.store.changed(state.pins.remove(key), "removed")  # a shared store forgets too
    return keys


def evict_account(state: State, alias: str) -> list[Pin]:
    """Forget every pin of one account (here and in the store)."""
    gone = state.pins.remove_alias(alias)
    for pin in gone:
        state.store.changed(pin, "removed")
    return gone


def account_line(state: State, account: Account, now: float) -> str:
    """One line per account for the sticky.accounts command."""
    v = account_view(state, account, now)
    health = v["health"]["state"]
    if v["health"]["reason"]:
        health += f" ({v['health']['reason']})"
    if v["cooldown_left"]:
        health += f" {v['cooldown_left']:.0f}s left"
    cache = "-" if v["cache_percent"] is None else f"{v['cache_percent']}%"
    line = (f"{v['alias']} {v['provider']} {health} sessions={v['sessions']} "
            f"inflight={v['inflight']} requests={v['requests']} cache={cache} "
            f"cost=${v['cost_usd']:.4f}{login_words(v['login'])}")
    if v["windows"]:
        line += f" usage={v['usage_state']} windows=" + ",".join(
            window_text(w, now) for w in v["windows"])
    if v["warm_prefixes"]:
        line += f" warm_prefixes={v['warm_prefixes']}"
    return line


def login_words(login: dict[str, Any] | None) -> str:
    """The login part of an account line: ' login=live expires_in=1234s refreshes=3'."""
    if login is None:
        return ""
    if login["state"] == "revoked":
        return f" login=revoked ({login['reason']})"
    expires = "" if login["expires_in"] is None else f" expires_in={login['expires_in']:.0f}s"
    failing = f" refresh failing ({login['last_error']})" if login["failures"] else ""
    return f" login={login['state']}{expires} refreshes={login['refreshes']}{failing}"


def window_text(w: dict[str, Any], now: float) -> str:
    """'5h:95%(resets in 1h05m)', with a named limit first: 'gpt-sonic/7d:40%'."""
    text = f"{w['limit']}/" if w["limit"] else ""
    text += f"{span(w['minutes'] * 60)}:{w['used_percent']:g}%"
    if w["resets_at"] is not None:
        text += f"(resets in {span(max(0.0, w['resets_at'] - now))})"
    return text


def span(seconds: float) -> str:
    """A duration as people read it: 45s, 12m, 1h05m, 7d, 2d03h."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 3600:
        return f"{m}m"
    if s < 86400:
        return f"{h}h" + (f"{m % 60:02d}m" if m % 60 else "")
    return f"{d}d" + (f"{h % 24:02d}h" if h % 24 else "")


def session_line(pin: Pin, now: float) -> str:
    """One line per pin for the sticky.sessions command."""
    pct = cache_percent(pin.tokens_cached, pin.tokens_in)
    cache = f" cache={pct:.0f}%" if pct is not None else ""
    return (f"{pin.session} -> {pin.alias} requests={pin.requests} "
            f"idle={max(0.0, now - pin.last_used):.0f}s{cache}")
