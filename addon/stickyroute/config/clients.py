"""The optional client gate of a shared proxy: which client may use which accounts.

The accounts file's `clients:` section lists clients by name with the SHA-256 of their token
(never the token) and the account aliases they may use. A client presents its token as
`Authorization: Bearer TOKEN`, `x-api-key: TOKEN`, or as the proxy password
(`HTTPS_PROXY=http://NAME:TOKEN@host:port`, i.e. Proxy-Authorization on CONNECT). Pure code;
the token is hashed on arrival and never kept, logged or compared in clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

CLIENT_FIELDS = frozenset({"name", "token_hash", "accounts"})
ALL_ACCOUNTS = "*"
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HASH_RE = re.compile(r"^sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class Client:
    name: str
    token_sha256: str = field(repr=False)
    accounts: frozenset[str] = frozenset()  # aliases; contains "*" for every account

    def allows(self, alias: str) -> bool:
        return ALL_ACCOUNTS in self.accounts or alias in self.accounts


@dataclass(frozen=True)
class ClientGate:
    clients: tuple[Client, ...] = ()

    @cached_property
    def _by_hash(self) -> dict[str, Client]:
        return {c.token_sha256: c for c in self.clients}

    @cached_property
    def _by_name(self) -> dict[str, Client]:
        return {c.name: c for c in self.clients}

    def get(self, name: str) -> Client | None:
        return self._by_name.get(name)

    def match(self, tokens: Iterable[str]) -> Client | None:
        """The client whose token is one of `tokens`, or None."""
        # A dict lookup of the token's SHA-256: timing reveals nothing about a token, since
        # an attacker cannot steer the digest towards a stored one.
        for token in tokens:
            client = self._by_hash.get(token_hash(token))
            if client is not None:
                return client
        return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def client_tokens(headers: Mapping[str, str], proxy_authorization: str | None) -> list[str]:
    """Every token the client presented, most specific first (proxy password, bearer, key)."""
    tokens = []
    if proxy_authorization:
        tokens.append(_proxy_token(proxy_authorization))
    for value in (_bearer(headers.get("authorization", "")), headers.get("x-api-key", ""),
                  _proxy_token(headers.get("proxy-authorization", ""))):
        if value:
            tokens.append(value)
    return [t for t in tokens if t]


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _proxy_token(value: str) -> str:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ""
    return decoded.partition(":")[2]


def parse_clients(entries: Any, line: int, aliases: Iterable[str]) -> ClientGate:
    """The `clients:` section (YAML with __line__ marks); raise ValueError('LINE: reason')."""
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{line}: 'clients' must be a non-empty list of clients")
    known = set(aliases)
    clients: list[Client] = []
    seen: dict[str, int] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"{line}: each client must be a mapping with name, token_hash, "
                             "accounts")
        client = _parse_client(entry, known)
        if client.name in seen:
            raise ValueError(f"{entry['__line__']}: duplicate client {client.name!r} (first on "
                             f"line {seen[client.name]})")
        if any(c.token_sha256 == client.token_sha256 for c in clients):
            raise ValueError(f"{entry['__line__']}: client {client.name!r} has the same "
                             "token_hash as another client")
        seen[client.name] = entry["__line__"]
        clients.append(client)
    return ClientGate(tuple(clients))


def _parse_client(entry: dict[str, Any], known: set[str]) -> Client:
    lines: dict[str, int] = entry["__lines__"]

    def fail(key: str | None, reason: str) -> ValueError:
        return ValueError(f"{lines.get(key, entry['__line__']) if key else entry['__line__']}: "
                          f"{reason}")

    unknown = sorted(set(lines) - CLIENT_FIELDS)
    if unknown:
        raise fail(unknown[0], f"unknown client field {unknown[0]!r} (allowed: name, "
                               "token_hash, accounts)")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise fail("name", "client name must be 1-64 letters, digits, '.', '_' or '-'")
    raw_hash = entry.get("token_hash")
    m = _HASH_RE.match(raw_hash.strip().lower()) if isinstance(raw_hash, str) else None
    if m is None:
        raise fail("token_hash", f"{name}: token_hash must be 'sha256:' and 64 hex digits "
                                 "(the hash of the token, never the token)")
    accounts = entry.get("accounts")
    if isinstance(accounts, str):
        accounts = [accounts]
    if not isinstance(accounts, list) or not accounts:
        raise fail("accounts", f"{name}: accounts must be a list of account aliases (or '*')")
    for alias in accounts:
        if not isinstance(alias, str) or (alias != ALL_ACCOUNTS and alias not in known):
            raise fail("accounts", f"{name}: no account {alias!r}")
    return Client(name, m.group(1), frozenset(accounts))
