"""FakeUpstream: the fake provider server object tests start, inspect and break.

Owns all mutable state (accounts, log, faults) behind one lock; the HTTP handler in
handler.py only reads requests, calls in here, and writes replies.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from typing import Any, Self

from .accounts import AccountState
from .faults import Fault, FaultTable, make_fault
from .oauth import Check, OAuthLogins
from .usage import Meter, UsagePlan, UsageTable

logger = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # bursts of 100+ concurrent connections from the proxy
    upstream: FakeUpstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client closing its keep-alive connection is not worth a traceback
        super().handle_error(request, client_address)


class FakeUpstream:
    """Fake OpenAI + Anthropic + ChatGPT-backend API with per-account state."""

    def __init__(
        self,
        keys: Mapping[str, str] | None = None,
        chatgpt_accounts: Mapping[str, tuple[str, str]] | None = None,
        cache_ttl: float = 300.0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        usage: UsagePlan | None = None,
        wall_clock: Callable[[], float] = time.time,
        access_ttl: float = 3600.0,
        oauth_clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = dict(keys or {})
        self.chatgpt_accounts = {k: tuple(v) for k, v in (chatgpt_accounts or {}).items()}
        self.cache_ttl = cache_ttl
        self.host = host
        self._want_port = port
        self.clock = clock
        self.lock = threading.RLock()
        self.log: list[dict[str, Any]] = []
        self.faults = FaultTable()
        self.usage = UsageTable(usage, wall_clock)  # usage windows: off unless asked for
        self._accounts: dict[str, AccountState] = {}
        self._secret = secrets.token_bytes(32)
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[Any] = set()
        # subscription logins: tests create them (oauth.create) and read their counters
        self.oauth = OAuthLogins(oauth_clock, access_ttl)

    # ---- lifecycle ----

    def start(self) -> Self:
        server = _Server((self.host, self._want_port), _handler_class())
        server.upstream = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fakeapi",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        logger.info("fake upstream listening at %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.release_stalls()
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:  # keep-alive connections would otherwise outlive the server
            _shutdown(conn)
        self._server = None

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("fake upstream is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """host:port, the form the redirect addon's fake_upstream option takes."""
        return f"{self.host}:{self.port}"

    # ---- inspection and control ----

    def requests(self, **match: Any) -> list[dict[str, Any]]:
        """Copy of the log; keyword arguments keep entries whose fields equal them."""
        with self.lock:
            entries = [e for e in self.log if all(e.get(k) == v for k, v in match.items())]
            return copy.deepcopy(entries)

    def reset(self) -> None:
        """Log, faults and every account's state, as if freshly started (same port)."""
        with self.lock:
            self.log.clear()
            self.faults.clear()
            self._accounts.clear()
            self.usage.reset()
            self.oauth.clear()

    def reset_log(self) -> None:
        with self.lock:
            self.log.clear()

    def add_fault(self, account: str | None = None, kind: str = "429", count: int = 1,
                  retry_after: float | None = None, delay: float = 0.0,
                  path: str | None = None) -> Fault:
        fault = make_fault(kind, account, count, retry_after, delay, path)
        with self.lock:
            self.faults.add(fault)
        return fault

    def set_usage(self, account: str, minutes: int, used_percent: float | None = None,
                  resets_in: float | None = None, step: float | None = None) -> Meter:
        """Set one usage window of an account (which is metered from then on)."""
        with self.lock:
            return self.usage.set(account, int(minutes), used_percent, resets_in, step)

    def usage_of(self, account: str) -> list[dict[str, Any]]:
        with self.lock:
            return self.usage.of(account)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def release_stalls(self) -> None:
        """Let every stalled stream continue now; later stalls wait for the next release."""
        with self.lock:
            event, self._release = self._release, threading.Event()
        event.set()

    def stall_event(self) -> threading.Event:
        with self.lock:
            return self._release

    def account(self, name: str) -> AccountState:
        """Server-side state of one account (created on first use)."""
        with self.lock:
            if name not in self._accounts:
                self._accounts[name] = AccountState(name, self._secret, self.cache_ttl,
                                                    self.clock)
            return self._accounts[name]

    def reset_accounts(self) -> None:
        """Forget every account's cache and stored responses."""
        with self.lock:
            self._accounts.clear()

    # ---- used by the handler ----

    def authenticate(self, family: str, headers: Mapping[str, str]) -> tuple[str | None, str]:
        """(account name or None, raw credential carried) for a request of this family."""
        bearer = _bearer(headers.get("authorization", ""))
        if family == "chatgpt":
            entry = self.chatgpt_accounts.get(bearer)
            if entry and headers.get("chatgpt-account-id") == entry[1]:
                return entry[0], bearer
            return None, bearer
        if family == "anthropic":
            credential = headers.get("x-api-key") or bearer
        elif family == "openai":
            credential = bearer
        else:  # echo / models: informational only
            credential = bearer or headers.get("x-api-key", "")
            chatgpt = self.chatgpt_accounts.get(credential)
            return self.keys.get(credential) or (chatgpt[0] if chatgpt else None), credential
        return self.keys.get(credential), credential

    def check_oauth(self, family: str, headers: Mapping[str, str]) -> Check | None:
        """Whose OAuth access token this is, or the 401 it gets; None: not one of ours."""
        with self.lock:
            return self.oauth.check(family, headers)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)

    def track(self, conn: Any, alive: bool) -> None:
        with self.lock:
            (self._conns.add if alive else self._conns.discard)(conn)


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _shutdown(conn: Any) -> None:
    import socket

    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _handler_class() -> type:
    from .handler import FakeHandler  # handler imports this module's types only lazily

    return FakeHandler
