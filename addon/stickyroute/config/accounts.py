"""The accounts file: parsed into immutable Account values, or a ValueError naming file and line.

Owns credential loading (literal, ${ENV}, api_key_file, oauth_file). A credential must never
appear in an error message or a repr: errors name the alias and the field, never the value.
An OAuth account's tokens change while it runs: the Account keeps only where its login lives
(`oauth`); the current tokens are held elsewhere and handed to credential_headers().
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from .clients import ClientGate, parse_clients
from .loginfile import SHAPE_NAMES, read_login
from .oauth import DEFAULTS as OAUTH_DEFAULTS
from .oauth import LoginSource, Tokens, check_token_url
from .prices import DEFAULTS as DEFAULT_PRICES
from .prices import Price, parse_prices

PROVIDERS = ("openai", "anthropic", "chatgpt")
DEFAULT_HOSTS: dict[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "anthropic": ("api.anthropic.com",),
    "chatgpt": ("chatgpt.com",),
}
ACCOUNT_FIELDS = frozenset(
    {"alias", "provider", "api_key", "api_key_file", "oauth_file", "token_url", "client_id",
     "account_id", "weight", "hosts", "headers", "enabled"}
)
CREDENTIAL_FIELDS = ("api_key", "api_key_file", "oauth_file")
TOP_LEVEL_KEYS = frozenset({"accounts", "prices", "clients"})
_ALIAS_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HOST_RE = re.compile(r"^[a-z0-9.-]+$")


class AccountsError(ValueError):
    """A problem in the accounts file; the message starts with `file:line:`."""


@dataclass(frozen=True)
class Account:
    alias: str
    provider: str
    api_key: str = field(repr=False)
    account_id: str | None = field(default=None, repr=False)
    weight: int = 1
    hosts: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    enabled: bool = True
    key_file: str | None = field(default=None, repr=False, compare=False)
    oauth: LoginSource | None = None  # a subscription login instead of api_key

    def credential_headers(self, tokens: Tokens | None = None) -> list[tuple[str, str]]:
        """The headers that authenticate a request as this account.

        An OAuth account needs its login's current `tokens` (ValueError without them); an
        Anthropic one then signs with a Bearer token, which the API takes only with the
        oauth beta flag in `anthropic-beta` (see core.oauth.merge_beta).
        """
        account_id = self.account_id
        if self.oauth is not None:
            if tokens is None:
                raise ValueError(f"{self.alias}: no login tokens to sign with")
            out = [("authorization", f"Bearer {tokens.access_token}")]
            account_id = account_id or tokens.account_id
        elif self.provider == "anthropic":
            out = [("x-api-key", self.api_key)]
        else:
            out = [("authorization", f"Bearer {self.api_key}")]
        if self.provider == "chatgpt" and account_id:
            out.append(("chatgpt-account-id", account_id))
        return out + list(self.headers)

    def secrets(self) -> list[str]:
        """Every value of this account that must never be shown."""
        values = [self.api_key] + [v for _, v in self.headers]
        if self.account_id:
            values.append(self.account_id)
        return [v for v in values if v]


@dataclass(frozen=True)
class AccountSet:
    accounts: tuple[Account, ...] = ()
    prices: Mapping[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    clients: ClientGate | None = None  # None: no client gate, every client may use every account
    files: tuple[str, ...] = ()  # the accounts file and the key files it read

    # Indexes, built on first use (the set never changes once built).
    @cached_property
    def _by_alias(self) -> dict[str, Account]:
        return {a.alias: a for a in self.accounts}

    @cached_property
    def _provider_by_host(self) -> dict[str, str]:
        return {h: a.provider for a in self.accounts for h in a.hosts}

    @cached_property
    def _by_provider(self) -> dict[str, tuple[Account, ...]]:
        by_provider: dict[str, list[Account]] = {}
        for a in self.accounts:
            by_provider.setdefault(a.provider, []).append(a)
        return {k: tuple(v) for k, v in by_provider.items()}

    def get(self, alias: str) -> Account | None:
        return self._by_alias.get(alias)

    def provider_for_host(self, host: str) -> str | None:
        return self._provider_by_host.get(host)

    def of_provider(self, provider: str) -> tuple[Account, ...]:
        return self._by_provider.get(provider, ())

    def secrets(self) -> list[str]:
        return [s for a in self.accounts for s in a.secrets()]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping and of each of its keys."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise AccountsError(f"{key_node.start_mark.line + 1}: keys must be strings")
        if key in mapping:
            raise AccountsError(f"{key_node.start_mark.line + 1}: duplicate key {key!r}")
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    mapping["__line__"] = node.start_mark.line + 1
    mapping["__lines__"] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_accounts(path: str | Path, env: Mapping[str, str] | None = None) -> AccountSet:
    """Read and validate an accounts file; raise AccountsError('file:line: reason')."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise AccountsError(f"{p}: cannot read accounts file: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise AccountsError(f"{p}: accounts file is not UTF-8 text") from None
    try:
        parsed = parse_accounts(text, base_dir=p.parent, env=os.environ if env is None else env)
    except AccountsError as e:
        raise AccountsError(f"{p}:{e}") from None
    key_files = tuple(a.key_file for a in parsed.accounts if a.key_file) + tuple(
        a.oauth.file for a in parsed.accounts if a.oauth)
    return dataclasses.replace(parsed, files=(str(p), *key_files))


def parse_accounts(
    text: str, base_dir: Path = Path("."), env: Mapping[str, str] | None = None
) -> AccountSet:
    """Parse accounts YAML text. Errors read 'LINE: reason'."""
    env = os.environ if env is None else env
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except AccountsError:
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise AccountsError(f"{line}: broken YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise AccountsError(f"1: broken YAML: {e}") from None
    if not isinstance(data, dict):
        raise AccountsError("1: expected a mapping with an 'accounts:' list")
    lines = data["__lines__"]
    unknown = sorted(set(lines) - TOP_LEVEL_KEYS)
    if unknown:
        raise AccountsError(
            f"{lines[unknown[0]]}: unknown key {unknown[0]!r} (allowed: "
            f"{', '.join(sorted(TOP_LEVEL_KEYS))})"
        )
    entries = data.get("accounts")
    if not isinstance(entries, list):
        raise AccountsError(f"{lines.get('accounts', 1)}: 'accounts' must be a list")
    accounts: list[Account] = []
    seen: dict[str, int] = {}
    host_owner: dict[str, tuple[str, str]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise AccountsError(f"{lines['accounts']}: each account must be a mapping")
        account = _parse_account(entry, base_dir, env)
        line = entry["__line__"]
        if account.alias in seen:
            raise AccountsError(
                f"{line}: duplicate alias {account.alias!r} (first on line {seen[account.alias]})"
            )
        seen[account.alias] = line
        for h in account.hosts:
            owner = host_owner.setdefault(h, (account.provider, account.alias))
            if owner[0] != account.provider:
                raise AccountsError(
                    f"{line}: host {h!r} of {account.alias!r} ({account.provider}) is already "
                    f"used by {owner[1]!r} ({owner[0]}); a host serves one provider"
                )
        accounts.append(account)
    raw_prices = data.get("prices") or {}
    if not isinstance(raw_prices, dict):
        raise AccountsError(f"{lines['prices']}: 'prices' must be a mapping of model -> prices")
    try:
        prices = parse_prices(_strip_lines(raw_prices))
    except ValueError as e:
        raise AccountsError(f"{lines['prices']}: {e}") from None
    clients = None
    if "clients" in data:
        try:
            clients = parse_clients(data["clients"], lines["clients"], seen)
        except ValueError as e:
            raise AccountsError(str(e)) from None
    return AccountSet(tuple(accounts), prices, clients)


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k not in ("__line__", "__lines__")}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


Fail = Callable[[str | None, str], AccountsError]


def _parse_account(entry: dict[str, Any], base_dir: Path, env: Mapping[str, str]) -> Account:
    line = entry["__line__"]
    lines: dict[str, int] = entry["__lines__"]

    def fail(key: str | None, reason: str) -> AccountsError:
        return AccountsError(f"{lines.get(key, line) if key else line}: {reason}")

    unknown = sorted(set(lines) - ACCOUNT_FIELDS)
    if unknown:
        raise fail(unknown[0], f"unknown field {unknown[0]!r}")
    alias = entry.get("alias")
    if alias is not None and not isinstance(alias, str):
        raise fail("alias", f"alias must be text, got {alias!r} (quote it: YAML reads "
                            "yes/no/on/off and numbers as other types)")
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise fail("alias", "alias must be 1-64 letters, digits, '.', '_' or '-'")
    provider = entry.get("provider")
    if provider not in PROVIDERS:
        raise fail("provider", f"{alias}: unknown provider {provider!r} "
                               f"(expected one of: {', '.join(PROVIDERS)})")
    given = [k for k in CREDENTIAL_FIELDS if k in entry]
    if len(given) != 1:
        raise fail(None, f"{alias}: give exactly one of 'api_key', 'api_key_file' or "
                         "'oauth_file'")
    oauth, login_tokens = None, None
    if given == ["oauth_file"]:
        api_key, key_file = "", None
        oauth, login_tokens = _oauth(entry, alias, provider, base_dir, fail)
    else:
        for name in ("token_url", "client_id"):
            if name in entry:
                raise fail(name, f"{alias}: {name} goes with oauth_file only")
        api_key, key_file = _credential(entry, alias, base_dir, env, fail)
    account_id = entry.get("account_id")
    if account_id is not None:
        account_id = _expand(str(account_id), alias, "account_id", env, fail)
    if provider == "chatgpt" and not account_id and not (login_tokens and
                                                         login_tokens.account_id):
        raise fail(None, f"{alias}: a chatgpt account needs 'account_id' (its ChatGPT-Account-ID)")
    weight = entry.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
        raise fail("weight", f"{alias}: weight must be a whole number >= 1")
    hosts_raw = entry.get("hosts", list(DEFAULT_HOSTS[provider]))
    if isinstance(hosts_raw, str):
        hosts_raw = [hosts_raw]
    if not isinstance(hosts_raw, list) or not hosts_raw:
        raise fail("hosts", f"{alias}: hosts must be a non-empty list of host names")
    hosts = []
    for h in hosts_raw:
        if not isinstance(h, str) or not _HOST_RE.match(h.lower()):
            raise fail("hosts", f"{alias}: {h!r} is not a host name")
        hosts.append(h.lower())
    headers_raw = entry.get("headers") or {}
    if not isinstance(headers_raw, dict):
        raise fail("headers", f"{alias}: headers must be a mapping of name -> value")
    headers = tuple(
        (str(k).lower(), _expand(str(v), alias, f"headers.{k}", env, fail))
        for k, v in _strip_lines(headers_raw).items()
    )
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail("enabled", f"{alias}: enabled must be true or false")
    return Account(alias, provider, api_key, account_id, weight, tuple(hosts), headers, enabled,
                   key_file, oauth)


def _oauth(entry: dict[str, Any], alias: str, provider: str, base_dir: Path,
           fail: Any) -> tuple[LoginSource, Tokens]:
    """Where the login lives and how it is refreshed; the file is read once to check it."""
    if provider not in OAUTH_DEFAULTS:
        raise fail("oauth_file", f"{alias}: oauth_file is for provider chatgpt (a Codex login) "
                                 f"or anthropic (a Claude Code login), not {provider}")
    raw_path = entry["oauth_file"]
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise fail("oauth_file", f"{alias}: oauth_file must be a path")
    path = (base_dir / os.path.expanduser(raw_path)).resolve()
    try:
        doc = read_login(path)
    except ValueError as e:
        raise fail("oauth_file", f"{alias}: oauth_file {e}") from None
    if doc.provider != provider:
        raise fail("oauth_file", f"{alias}: oauth_file {path} holds {SHAPE_NAMES[doc.shape]}, "
                                 f"which is not for provider {provider}")
    token_url, client_id = OAUTH_DEFAULTS[provider]
    if "token_url" in entry:
        raw = entry["token_url"]
        try:
            token_url = check_token_url(raw if isinstance(raw, str) else repr(raw))
        except ValueError as e:
            raise fail("token_url", f"{alias}: {e}") from None
    if "client_id" in entry:
        client_id = entry["client_id"]
        if not isinstance(client_id, str) or not client_id.strip():
            raise fail("client_id", f"{alias}: client_id must be a non-empty string")
    return LoginSource(provider, str(path), token_url, client_id), doc.tokens


def _credential(entry: dict[str, Any], alias: str, base_dir: Path, env: Mapping[str, str],
                fail: Fail) -> tuple[str, str | None]:
    if "api_key" in entry:
        raw = entry["api_key"]
        if not isinstance(raw, str) or not raw.strip():
            raise fail("api_key", f"{alias}: api_key must be a non-empty string")
        key = _expand(raw, alias, "api_key", env, fail)
        path = None
    else:
        raw_path = entry["api_key_file"]
        if not isinstance(raw_path, str):
            raise fail("api_key_file", f"{alias}: api_key_file must be a path")
        path = (base_dir / os.path.expanduser(raw_path)).resolve()
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or type(e).__name__
            raise fail("api_key_file", f"{alias}: cannot read api_key_file {path}: {reason}") \
                from None
    if not key.strip() or any(c in key for c in "\r\n"):
        raise fail("api_key", f"{alias}: the credential is empty or spans several lines")
    return key.strip(), str(path) if path else None


def _expand(value: str, alias: str, what: str, env: Mapping[str, str], fail: Fail) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env or not env[name]:
            raise fail(what.split(".")[0], f"{alias}: {what} uses ${{{name}}}, which is not set")
        return env[name]

    return _ENV_RE.sub(sub, value)
