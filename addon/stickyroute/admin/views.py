"""What an operator sees and steers: account and session views, health, eviction.

Read by the admin API, the metrics and the commands, from a StickyRoute (duck-typed: no
mitmproxy import). Views are built field by field from attributes that are not secret; an
Account object is never serialised whole, so no credential can leak through a view.
"""

from __future__ import annotations

from typing import Any

from stickyroute.core.pins import Pin

DISABLED_BY_FILE = "enabled: false in the accounts file"
DISABLED_BY_OPERATOR = "disabled by an operator"
SHORT = 8  # characters of a session's value shown in log lines (SessionId.short)


def health_of(sticky: Any, account: Any, now: float) -> dict[str, Any]:
    """{"state": healthy|cooling|disabled, "reason": str|None, "until": float|None}.

    The accounts file's `enabled: false` first; everything else (operator disables included)
    is sticky.health's.
    """
    if not account.enabled:
        return {"state": "disabled", "reason": DISABLED_BY_FILE, "until": None}
    described: dict[str, Any] = sticky.health.describe(account.alias, now)
    return described


def account_view(sticky: Any, account: Any, now: float) -> dict[str, Any]:
    stats = sticky.ledger[account.alias]
    health = health_of(sticky, account, now)
    until = health.get("until")
    ratio = stats.cache_ratio
    return {
        "alias": account.alias,
        "provider": account.provider,
        "enabled": account.enabled,
        "weight": account.weight,
        "hosts": list(account.hosts),
        "health": health,
        "cooldown_left": max(0.0, until - now) if until else 0.0,
        "sessions": sticky.pins.sessions_per_alias().get(account.alias, 0),
        "inflight": stats.inflight,
        "requests": stats.requests,
        "affinity": dict(stats.affinity),
        "tokens_in": stats.tokens_in,
        "tokens_out": stats.tokens_out,
        "tokens_cached": stats.tokens_cached,
        "cache_percent": None if ratio is None else round(100 * ratio, 1),
        "cost_usd": stats.cost_micros / 1e6,
        "affinity_breaks": stats.affinity_breaks,
        "errors": stats.errors,
    }


def accounts_view(sticky: Any, now: float) -> list[dict[str, Any]]:
    return [account_view(sticky, a, now) for a in sticky.accounts.accounts]


def session_view(pin: Pin, now: float) -> dict[str, Any]:
    value = pin.session.rsplit("/", 1)[-1]
    return {
        "id": pin.session,
        "short": value[-SHORT:],
        "alias": pin.alias,
        "created": pin.created,
        "last_used": pin.last_used,
        "idle": max(0.0, now - pin.last_used),
        "requests": pin.requests,
        "tokens_in": pin.tokens_in,
        "tokens_out": pin.tokens_out,
        "tokens_cached": pin.tokens_cached,
        "cache_percent": round(100 * pin.tokens_cached / pin.tokens_in, 1)
        if pin.tokens_in else None,
        "cost_usd": pin.cost_micros / 1e6,
        "moves": pin.moves,
    }


def find_sessions(sticky: Any, ident: str) -> list[Pin]:
    """Pins named by a full key, else by its last part, else by the 8-character short form."""
    pin = sticky.pins.get(ident, sticky.clock())
    if pin is not None:
        return [pin]
    value = [p for p in sticky.pins if p.session.rsplit("/", 1)[-1] == ident]
    if value:
        return value
    if len(ident) == SHORT:  # the form log lines show; may name several clients' sessions
        return [p for p in sticky.pins if p.session.endswith(ident)]
    return []


def evict(sticky: Any, ident: str) -> list[str]:
    """Forget the pins named by ident; their next request is re-pinned. Returns their keys."""
    keys = [p.session for p in find_sessions(sticky, ident)]
    for key in keys:
        sticky.store.changed(sticky.pins.remove(key), "removed")  # a shared store forgets too
    return keys


def evict_account(sticky: Any, alias: str) -> list[Pin]:
    """Forget every pin of one account (here and in the store)."""
    gone: list[Pin] = sticky.pins.remove_alias(alias)
    for pin in gone:
        sticky.store.changed(pin, "removed")
    return gone


def account_line(sticky: Any, account: Any, now: float) -> str:
    """One line per account for the sticky.accounts command."""
    v = account_view(sticky, account, now)
    health = v["health"]["state"]
    if v["health"]["reason"]:
        health += f" ({v['health']['reason']})"
    if v["cooldown_left"]:
        health += f" {v['cooldown_left']:.0f}s left"
    cache = "-" if v["cache_percent"] is None else f"{v['cache_percent']}%"
    return (f"{v['alias']} {v['provider']} {health} sessions={v['sessions']} "
            f"inflight={v['inflight']} requests={v['requests']} cache={cache} "
            f"cost=${v['cost_usd']:.4f}")


def describe(meta: dict[str, Any]) -> str:
    """A routed flow's metadata in one line: its comment, and the start of its log line."""
    parts = [f"{meta['endpoint']} -> {meta['account']}"]
    if meta["session"]:
        parts.append(f"session {meta['session']} ({meta['session_source']})")
    affinity = meta["affinity"]
    if meta.get("moved_from"):
        affinity += f" from {meta['moved_from']}"
    parts.append(affinity)
    if meta.get("prewarm"):
        parts.append("prewarm")
    parts.append(f"{meta['request_bytes']} B")
    if meta["injected"]:
        parts.append("+" + ",".join(meta["injected"]))
    parts += [f"dropped {meta['dropped_reasoning']} encrypted reasoning item(s)"] * bool(
        meta.get("dropped_reasoning")) + [f"retry {meta['attempt']}"] * bool(meta.get("attempt"))
    return " | ".join(parts)


def session_line(pin: Pin, now: float) -> str:
    """One line per pin for the sticky.sessions command."""
    cache = f" cache={100 * pin.tokens_cached / pin.tokens_in:.0f}%" if pin.tokens_in else ""
    return (f"{pin.session} -> {pin.alias} requests={pin.requests} "
            f"idle={max(0.0, now - pin.last_used):.0f}s{cache}")
