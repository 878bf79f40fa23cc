"""The admin HTTP API as a pure function: (method, target, headers, body) -> Reply.

admin.py owns the sockets; this module owns routing, auth and JSON, so tests drive it without
a server. Everything but the dashboard page (static, no data) needs the bearer token, compared
in constant time; a request without it learns nothing but 401. Answers are built from
views.py, which never serialises a credential.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from stickyroute.config.accounts import Account
from stickyroute.core.health import DISABLED_BY_OPERATOR
from stickyroute.core.ledger import cache_percent
from stickyroute.state import State

from . import views

JSON = "application/json"
HTML = "text/html; charset=utf-8"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_REASON = 200
# The dashboard is one inline file: nothing may load from elsewhere, nothing may frame it.
PAGE_HEADERS = (
    ("content-security-policy", "default-src 'none'; script-src 'unsafe-inline'; "
     "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; frame-ancestors 'none'"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    def reply(self) -> Reply:
        return json_reply(self.status, {"error": {"code": self.code, "message": self.message}},
                          self.headers)


def json_reply(status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    return Reply(status, body, JSON, (("cache-control", "no-store"), *headers))


Handler = Callable[[list[str], dict[str, list[str]], bytes], Reply]


class AdminApi:
    def __init__(self, state: State, token: str, page: Callable[[], bytes],
                 metrics: Callable[[], tuple[bytes, str]]) -> None:
        if not token:
            raise ValueError("the admin API needs a token")
        self.state = state
        self._token = token.encode()
        self._page = page
        self._metrics = metrics
        # (method, path pattern, handler); "*" is one segment, "**" the (unencoded) rest.
        self._routes: list[tuple[str, tuple[str, ...], Handler]] = [
            ("GET", ("api", "state"), self.get_state),
            ("GET", ("api", "sessions"), self.get_sessions),
            ("DELETE", ("api", "sessions", "**"), self.delete_session),
            ("GET", ("api", "accounts"), self.get_accounts),
            ("GET", ("api", "accounts", "*"), self.get_account),
            ("DELETE", ("api", "accounts", "*", "sessions"), self.delete_account_sessions),
            ("POST", ("api", "accounts", "*", "disable"), self.post_disable),
            ("POST", ("api", "accounts", "*", "enable"), self.post_enable),
            ("GET", ("metrics",), self.get_metrics),
        ]

    def authorized(self, headers: Mapping[str, str]) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  self._token)

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               body: bytes = b"") -> Reply:
        try:
            return self._handle(method.upper(), target, headers, body)
        except ApiError as e:
            return e.reply()

    def _handle(self, method: str, target: str, headers: Mapping[str, str],
                body: bytes) -> Reply:
        path, _, query = target.partition("?")
        if path in ("/", "/index.html"):
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}",
                               (("allow", "GET, HEAD"),))
            return Reply(200, self._page(), HTML, (("cache-control", "no-store"), *PAGE_HEADERS))
        if not self.authorized(headers):
            raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' "
                           "header is required", (("www-authenticate", 'Bearer realm="sticky"'),))
        raw = path.strip("/").split("/")  # split before decoding: session ids contain '/'
        allowed: list[str] = []
        for want, pattern, handler in self._routes:
            try:
                args = _match(pattern, raw)
            except UnicodeDecodeError:
                raise ApiError(400, "bad_request", "the path is not UTF-8") from None
            if args is None:
                continue
            if method == want or (method == "HEAD" and want == "GET"):
                try:
                    params = parse_qs(query, keep_blank_values=True, strict_parsing=False,
                                      errors="strict")
                except UnicodeDecodeError:
                    raise ApiError(400, "bad_request", "the query is not UTF-8") from None
                return handler(args, params, body)
            allowed.append(want)
        if allowed:
            raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}",
                           (("allow", ", ".join(allowed)),))
        raise ApiError(404, "not_found", f"no such endpoint: {path}")

    # ---- endpoints ---------------------------------------------------------------------
    def get_state(self, args: list[str], params: dict[str, list[str]], body: bytes) -> Reply:
        s = self.state
        now = s.clock()
        accounts = views.accounts_view(s, now)
        tin = sum(a["tokens_in"] for a in accounts)
        cached = sum(a["tokens_cached"] for a in accounts)
        return json_reply(200, {
            "now": now,
            "started": s.started,
            "uptime": max(0.0, now - s.started),
            "sessions": {"count": len(s.pins), "byAlias": dict(s.pins.sessions_per_alias()),
                         "shared": _shared(s)},
            "accounts": accounts,
            "totals": {
                "requests": sum(a["requests"] for a in accounts),
                "inflight": sum(a["inflight"] for a in accounts),
                "tokens_in": tin,
                "tokens_out": sum(a["tokens_out"] for a in accounts),
                "tokens_cached": cached,
                "cache_percent": cache_percent(cached, tin),
                "cost_usd": sum(a["cost_usd"] for a in accounts),
                "affinity_breaks": sum(a["affinity_breaks"] for a in accounts),
            },
            "sweeps": {"count": s.sweeps.count, "seconds": s.sweeps.seconds,
                       "last_seconds": s.sweeps.last_seconds, "removed": s.sweeps.removed},
        })

    def get_sessions(self, args: list[str], params: dict[str, list[str]], body: bytes) -> Reply:
        limit = _int_param(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        offset = _int_param(params, "offset", 0, 0, None)
        alias = params.get("account", [None])[-1]
        if alias is not None:
            self._account(alias)
        pins = [p for p in self.state.pins if not alias or p.alias == alias]
        pins.reverse()  # most recently used first
        now = self.state.clock()
        return json_reply(200, {
            "total": len(pins), "offset": offset, "limit": limit,
            "sessions": [views.session_view(p, now) for p in pins[offset:offset + limit]],
        })

    def delete_session(self, args: list[str], params: dict[str, list[str]], body: bytes) -> Reply:
        ident = args[0]
        keys = views.evict(self.state, ident)
        if not keys:
            raise ApiError(404, "not_found", f"no pinned session {ident!r}")
        return json_reply(200, {"evicted": keys})

    def get_accounts(self, args: list[str], params: dict[str, list[str]], body: bytes) -> Reply:
        return json_reply(200, {"accounts": views.accounts_view(self.state,
                                                                self.state.clock())})

    def get_account(self, args: list[str], params: dict[str, list[str]], body: bytes) -> Reply:
        account = self._account(args[0])
        return json_reply(200, views.account_view(self.state, account, self.state.clock()))

    def delete_account_sessions(self, args: list[str], params: dict[str, list[str]],
                                body: bytes) -> Reply:
        account = self._account(args[0])
        gone = views.evict_account(self.state, account.alias)
        return json_reply(200, {"alias": account.alias, "evicted": len(gone)})

    def post_disable(self, args: list[str], params: dict[str, list[str]], body: bytes) -> Reply:
        account = self._account(args[0])
        reason = _reason(body)
        now = self.state.clock()
        self.state.health.disable(account.alias, reason, now)
        return json_reply(200, views.account_view(self.state, account, now))

    def post_enable(self, args: list[str], params: dict[str, list[str]], body: bytes) -> Reply:
        account = self._account(args[0])
        now = self.state.clock()
        if not self.state.health.enable(account.alias, now):
            raise ApiError(409, "disabled_in_file", f"{account.alias} is disabled in the accounts "
                           "file (enabled: false); only the file can enable it")
        return json_reply(200, views.account_view(self.state, account, now))

    def get_metrics(self, args: list[str], params: dict[str, list[str]], body: bytes) -> Reply:
        text, content_type = self._metrics()
        return Reply(200, text, content_type, (("cache-control", "no-store"),))

    def _account(self, alias: str) -> Account:
        account = self.state.accounts.get(alias)
        if account is None:
            raise ApiError(404, "not_found", f"no account {alias!r}")
        return account


def _shared(state: State) -> dict[str, int] | None:
    """Sessions per alias across every proxy on a shared store (None: this proxy only)."""
    counts = state.store.shared_sessions()
    return None if counts is None else dict(counts)


def _match(pattern: tuple[str, ...], raw: list[str]) -> list[str] | None:
    args: list[str] = []
    for i, want in enumerate(pattern):
        if want == "**":
            rest = raw[i:]
            if not rest or not all(rest):
                return None
            args.append(unquote("/".join(rest), errors="strict"))
            return args
        if i >= len(raw):
            return None
        if want == "*":
            if not raw[i]:
                return None
            args.append(unquote(raw[i], errors="strict"))
        elif raw[i] != want:
            return None
    return args if len(raw) == len(pattern) else None


def _int_param(params: dict[str, list[str]], name: str, default: int, low: int,
               high: int | None) -> int:
    values = params.get(name)
    if not values:
        return default
    text = values[-1]
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ApiError(400, "bad_request", f"{name} must be a whole number, got {text[:40]!r}")
    n = int(text)
    if n < low or (high is not None and n > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, "bad_request", f"{name} must be {bound}, got {n}")
    return n


def _reason(body: bytes) -> str:
    """The optional {"reason": "..."} of a disable request."""
    if not body.strip():
        return DISABLED_BY_OPERATOR
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "the body must be JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", 'the body must be a JSON object like {"reason": "…"}')
    reason = data.get("reason", DISABLED_BY_OPERATOR)
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise ApiError(400, "bad_request",
                       f"reason must be a non-empty string of at most {MAX_REASON} characters")
    return reason.strip()
