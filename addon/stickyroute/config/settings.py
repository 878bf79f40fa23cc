"""The sticky_* options: declared once here (name, type, default, help, choices), parsed into
one immutable Settings value.

Parsing raises ValueError naming the option; the glue turns it into an OptionsError and only
then swaps the new settings in, so a bad option leaves the old ones running. Defaults live in
OPTIONS only: `Settings.defaults()` is OPTIONS parsed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

STRATEGIES = ("least-sessions", "round-robin", "least-inflight", "weighted", "fill-first",
              "random", "headroom")
FALLBACKS = ("rotate", "fail")
STATE_FILE = "stickyroute-state.json"  # the file store's file in mitmproxy's confdir
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Option(NamedTuple):
    name: str
    typespec: type | Any
    default: Any
    help: str
    choices: Sequence[str] | None = None


OPTIONS: tuple[Option, ...] = (
    Option("sticky_accounts", str, "accounts.yaml",
           "Path of the accounts file (re-read when it changes on disk)."),
    Option("sticky_enabled", bool, True,
           "Pin each conversation to one account. Off: every request is routed by the "
           "strategy."),
    Option("sticky_strategy", str, "headroom",
           "How a new session picks its account among the healthy accounts of its provider. "
           "headroom: where its prompt prefix is cached already, else the most room left in "
           "the accounts' usage windows, else the fewest sessions (least-sessions while "
           "nothing is known).", STRATEGIES),
    Option("sticky_fallback", str, "rotate",
           "What happens when a soft-pinned account is unavailable: rotate re-pins the session "
           "to a healthy account and says so; fail answers 503.", FALLBACKS),
    Option("sticky_drain_at", int, 90,
           "Percent of a usage window (5-hour, weekly, ...) from which an account is draining: "
           "it takes no new conversation while another account is below that mark; "
           "conversations pinned to it stay."),
    Option("sticky_openai_cache_ttl", int, 600,
           "Seconds an OpenAI prompt cache is taken to live after its last use (a request's "
           "own prompt_cache_retention=24h extends it). A soft pin idle longer holds no cache "
           "value: when its account is draining or cooling, its next turn is placed afresh."),
    Option("sticky_idle_timeout", int, 3600, "Seconds a pin lives without use."),
    Option("sticky_max_age", int, 86400, "Seconds a pin lives at most."),
    Option("sticky_max_sessions", int, 100_000,
           "Most pins kept; the least recently used go first."),
    Option("sticky_sweep_interval", int, 60, "Seconds between sweeps of expired pins."),
    Option("sticky_session_headers", Sequence[str], [],
           "Extra request header names to read a session id from (before the built-in ones)."),
    Option("sticky_inject_cache_key", bool, True,
           "Add a stable prompt_cache_key to OpenAI Responses requests that lack one."),
    Option("sticky_inject_include", bool, True,
           "Add reasoning.encrypted_content to include on OpenAI Responses requests that use "
           "reasoning with store=false."),
    Option("sticky_store", str, "",
           "Where pins (and the state that goes with them) are kept: memory, a file path, or "
           "redis://host:port/db. Empty: the file stickyroute-state.json in mitmproxy's "
           "confdir."),
    Option("sticky_store_prefix", str, "stickyroute:",
           "Key prefix in Redis, so several deployments can share one Redis server."),
    Option("sticky_store_timeout", int, 100,
           "Milliseconds a request waits for Redis before routing from local memory."),
    Option("sticky_stop_grace", int, 5,
           "Seconds a stop of the proxy waits for requests already sent upstream to finish "
           "(new requests are answered 503 meanwhile); what is still open then is closed."),
    Option("sticky_refresh_margin", int, 300,
           "Seconds before a subscription login's access token expires when it is refreshed in "
           "the background (oauth_file accounts; at most half the token's lifetime)."),
    Option("sticky_allow_remote", bool, False,
           "Sign requests from clients on other machines too (any address that is not "
           "loopback). Off: they get a 403 unless the accounts file's clients: gate lets them "
           "in. On: anyone who can reach the proxy's port spends the accounts."),
    Option("sticky_admin", str, "127.0.0.1:8091",
           "HOST:PORT of the admin API, metrics and dashboard; empty turns them off."),
    Option("sticky_admin_token", str, "",
           "Bearer token the admin API requires. Empty: the STICKY_ADMIN_TOKEN environment "
           "variable, else a random token generated at start and logged once with the "
           "dashboard URL."),
)
DEFAULTS: dict[str, Any] = {o.name: o.default for o in OPTIONS}


class StoreSpec(NamedTuple):
    """What sticky_store names: `file` with an empty target means the default file."""

    kind: Literal["memory", "file", "redis"]
    target: str = ""  # the file path or the redis URL

    def path_in(self, confdir: str) -> str:
        """The file store's path (the default one lives in mitmproxy's confdir)."""
        if self.target:
            return os.path.abspath(os.path.expanduser(self.target))
        return os.path.join(os.path.expanduser(confdir), STATE_FILE)


@dataclass(frozen=True, slots=True)
class Settings:
    accounts_path: str
    enabled: bool
    strategy: str
    fallback: str
    drain_at: int  # percent
    openai_cache_ttl: int  # seconds
    idle_timeout: int
    max_age: int
    max_sessions: int
    sweep_interval: int
    session_headers: tuple[str, ...]
    inject_cache_key: bool
    inject_include: bool
    store: StoreSpec
    store_prefix: str
    store_timeout: float  # seconds
    stop_grace: int  # seconds
    refresh_margin: int  # seconds
    allow_remote: bool
    admin: tuple[str, int] | None
    admin_token: str

    @staticmethod
    def defaults() -> Settings:
        return parse_settings(DEFAULTS.__getitem__)


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
    _within(get, "sticky_drain_at", 1, 100, "a percent")
    _within(get, "sticky_openai_cache_ttl", 1, 86400, "seconds")
    headers = []
    for h in get("sticky_session_headers"):
        h = h.strip().lower()
        if not h or any(c in h for c in " :\t"):
            raise ValueError(f"Cannot parse sticky_session_headers option: bad header name {h!r}")
        headers.append(h)
    try:
        store = parse_store(get("sticky_store"))
    except ValueError as e:
        raise ValueError(f"Cannot parse sticky_store option: {e}") from None
    _within(get, "sticky_store_timeout", 1, 500, "milliseconds")
    if not get("sticky_store_prefix"):
        raise ValueError("Cannot parse sticky_store_prefix option: must not be empty")
    _within(get, "sticky_stop_grace", 0, 3600, "seconds")
    _within(get, "sticky_refresh_margin", 0, 86400, "seconds")
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
        drain_at=get("sticky_drain_at"),
        openai_cache_ttl=get("sticky_openai_cache_ttl"),
        idle_timeout=get("sticky_idle_timeout"),
        max_age=get("sticky_max_age"),
        max_sessions=get("sticky_max_sessions"),
        sweep_interval=get("sticky_sweep_interval"),
        session_headers=tuple(headers),
        inject_cache_key=get("sticky_inject_cache_key"),
        inject_include=get("sticky_inject_include"),
        store=store,
        store_prefix=get("sticky_store_prefix"),
        store_timeout=get("sticky_store_timeout") / 1000,
        stop_grace=get("sticky_stop_grace"),
        refresh_margin=get("sticky_refresh_margin"),
        allow_remote=get("sticky_allow_remote"),
        admin=admin,
        admin_token=get("sticky_admin_token"),
    )


def _within(get: Callable[[str], Any], name: str, low: int, high: int, unit: str) -> None:
    if not low <= get(name) <= high:
        raise ValueError(f"Cannot parse {name} option: {unit} from {low} to {high}, "
                         f"got {get(name)}")


def parse_store(spec: str) -> StoreSpec:
    """memory | a file path | redis://... (also rediss://, unix://); '' is the default file."""
    spec = spec.strip()
    if spec == "memory":
        return StoreSpec("memory")
    if spec.startswith(REDIS_SCHEMES):
        if not spec.split("://", 1)[1]:
            raise ValueError(f"no server in {spec!r}")
        return StoreSpec("redis", spec)
    if "://" in spec:
        raise ValueError(f"{spec!r} is not memory, a file path or redis://...")
    return StoreSpec("file", spec)


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
