"""The sticky_* options: declared once here, parsed into one immutable Settings value.

Parsing raises ValueError naming the option; the glue turns it into an OptionsError and only
then swaps the new settings in, so a bad option leaves the old ones running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stickyroute.core.choose import STRATEGIES

FALLBACKS = ("rotate", "fail")

# name, type, default, help, choices
OPTIONS: tuple[tuple[str, type, Any, str, Sequence[str] | None], ...] = (
    ("sticky_accounts", str, "accounts.yaml",
     "Path of the accounts file (re-read when it changes on disk).", None),
    ("sticky_enabled", bool, True,
     "Pin each conversation to one account. Off: every request is routed by the strategy.", None),
    ("sticky_strategy", str, "least-sessions",
     "How a new session picks its account among the healthy accounts of its provider.",
     STRATEGIES),
    ("sticky_fallback", str, "rotate",
     "What happens when a soft-pinned account is unavailable: rotate re-pins the session to a "
     "healthy account and says so; fail answers 503.", FALLBACKS),
    ("sticky_idle_timeout", int, 3600, "Seconds a pin lives without use.", None),
    ("sticky_max_age", int, 86400, "Seconds a pin lives at most.", None),
    ("sticky_max_sessions", int, 100_000,
     "Most pins kept; the least recently used go first.", None),
    ("sticky_sweep_interval", int, 60, "Seconds between sweeps of expired pins.", None),
    ("sticky_session_headers", Sequence[str], [],
     "Extra request header names to read a session id from (before the built-in ones).", None),
    ("sticky_inject_cache_key", bool, True,
     "Add a stable prompt_cache_key to OpenAI Responses requests that lack one.", None),
    ("sticky_inject_include", bool, True,
     "Add reasoning.encrypted_content to include on OpenAI Responses requests that use "
     "reasoning with store=false.", None),
    ("sticky_store", str, "",
     "Where pins (and the state that goes with them) are kept: memory, a file path, or "
     "redis://host:port/db. Empty: the file stickyroute-state.json in mitmproxy's confdir.",
     None),
    ("sticky_store_prefix", str, "stickyroute:",
     "Key prefix in Redis, so several deployments can share one Redis server.", None),
    ("sticky_store_timeout", int, 100,
     "Milliseconds a request waits for Redis before routing from local memory.", None),
    ("sticky_stop_grace", int, 5,
     "Seconds a stop of the proxy waits for requests already sent upstream to finish (new "
     "requests are answered 503 meanwhile); what is still open then is closed.", None),
    ("sticky_admin", str, "127.0.0.1:8091",
     "HOST:PORT of the admin API, metrics and dashboard; empty turns them off.", None),
    ("sticky_admin_token", str, "",
     "Bearer token the admin API requires. Empty: the STICKY_ADMIN_TOKEN environment variable, "
     "else a random token generated at start and logged once with the dashboard URL.", None),
)


@dataclass(frozen=True)
class Settings:
    accounts_path: str = "accounts.yaml"
    enabled: bool = True
    strategy: str = "least-sessions"
    fallback: str = "rotate"
    idle_timeout: int = 3600
    max_age: int = 86400
    max_sessions: int = 100_000
    sweep_interval: int = 60
    session_headers: tuple[str, ...] = ()
    inject_cache_key: bool = True
    inject_include: bool = True
    store: str = ""
    store_prefix: str = "stickyroute:"
    stop_grace: int = 5
    admin: tuple[str, int] | None = ("127.0.0.1", 8091)
    admin_token: str = ""


def parse_settings(get: Callable[[str], Any]) -> Settings:
    """Build Settings from option values (`get(name)`); ValueError names the bad option."""
    for name in ("sticky_idle_timeout", "sticky_max_age", "sticky_max_sessions",
                 "sticky_sweep_interval"):
        if get(name) < 1:
            raise ValueError(f"Cannot parse {name} option: must be at least 1, got {get(name)}")
    for name, allowed in (("sticky_strategy", STRATEGIES), ("sticky_fallback", FALLBACKS)):
        if get(name) not in allowed:
            raise ValueError(f"Cannot parse {name} option: {get(name)!r} is not one of "
                             f"{', '.join(allowed)}")
    headers = []
    for h in get("sticky_session_headers"):
        h = h.strip().lower()
        if not h or any(c in h for c in " :\t"):
            raise ValueError(f"Cannot parse sticky_session_headers option: bad header name {h!r}")
        headers.append(h)
    store = get("sticky_store").strip()
    if store.startswith(("redis://", "rediss://", "unix://")):
        if len(store.split("://", 1)[1]) == 0:
            raise ValueError(f"Cannot parse sticky_store option: no server in {store!r}")
    elif "://" in store:
        raise ValueError(f"Cannot parse sticky_store option: {store!r} is not memory, a file "
                         "path or redis://...")
    if not 1 <= get("sticky_store_timeout") <= 500:
        raise ValueError("Cannot parse sticky_store_timeout option: milliseconds from 1 to 500, "
                         f"got {get('sticky_store_timeout')}")
    if not get("sticky_store_prefix"):
        raise ValueError("Cannot parse sticky_store_prefix option: must not be empty")
    if not 0 <= get("sticky_stop_grace") <= 3600:
        raise ValueError("Cannot parse sticky_stop_grace option: seconds from 0 to 3600, got "
                         f"{get('sticky_stop_grace')}")
    if not get("sticky_accounts"):
        raise ValueError("Cannot parse sticky_accounts option: a path is required")
    try:
        admin = parse_address(get("sticky_admin"))
    except ValueError as e:
        raise ValueError(f"Cannot parse sticky_admin option: {e}") from None
    return Settings(
        accounts_path=get("sticky_accounts"),
        enabled=get("sticky_enabled"),
        strategy=get("sticky_strategy"),
        fallback=get("sticky_fallback"),
        idle_timeout=get("sticky_idle_timeout"),
        max_age=get("sticky_max_age"),
        max_sessions=get("sticky_max_sessions"),
        sweep_interval=get("sticky_sweep_interval"),
        session_headers=tuple(headers),
        inject_cache_key=get("sticky_inject_cache_key"),
        inject_include=get("sticky_inject_include"),
        store=store,
        store_prefix=get("sticky_store_prefix"),
        stop_grace=get("sticky_stop_grace"),
        admin=admin,
        admin_token=get("sticky_admin_token"),
    )


def parse_address(spec: str) -> tuple[str, int] | None:
    """'HOST:PORT' (IPv6 as '[::1]:PORT') -> (host, port); '' -> None (off)."""
    spec = spec.strip()
    if not spec:
        return None
    host, sep, port = spec.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or any(c in host for c in " /[]") or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {spec!r}")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host, int(port)
