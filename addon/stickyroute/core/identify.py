"""Step 2: which conversation a request belongs to.

First match wins: the explicit `x-sticky-session` header, client session headers, body fields,
(a known response chain: chains.py), a derived hash, nothing. Keys are
`provider/client/value`, namespaced by provider family and by a hash of the client's own
credential, so two clients that happen to use the same id never share a pin; `value` may itself
contain '/', so keys are split with `split_key` only. Pure code: it must never raise on any
input, whatever the body holds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from stickyroute.config.oauth import jwt_claims

OVERRIDE_HEADER = "x-sticky-session"
SESSION_HEADERS: tuple[str, ...] = (
    "x-claude-code-session-id",
    "session-id",
    "session_id",
    "conversation_id",
    "x-session-id",
    "x-session-affinity",
    "x-opencode-session",
)
CLIENT_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "proxy-authorization")
# Claude Code's legacy metadata.user_id: user_<hash>_account_<uuid>_session_<uuid>
_LEGACY_USER_ID = re.compile(r"_session_([0-9A-Za-z-]{8,})$")
# Claude Code puts a per-request billing line first in its system prompt.
VOLATILE_PREFIXES = ("x-anthropic-billing-header",)
_MAX_ID_LEN = 256


class SessionId(NamedTuple):
    key: str  # namespaced: provider/client/value
    source: str  # where it came from, e.g. "header:session-id", "body:prompt_cache_key"
    hard: bool = False  # carries state only one account can read

    @property
    def short(self) -> str:
        return short_form(self.key)


SHORT = 8  # characters of a session's value shown in log lines and views


class SessionKey(NamedTuple):
    provider: str
    client: str
    value: str


def split_key(key: str) -> SessionKey | None:
    """The parts of a namespaced key (None for anything that is not one)."""
    parts = key.split("/", 2)
    return SessionKey(*parts) if len(parts) == 3 else None


def key_value(key: str) -> str:
    """The client's own id in a session key (the whole key when it is not namespaced)."""
    parts = split_key(key)
    return parts.value if parts else key


def short_form(key: str) -> str:
    """A short display form for logs: the value's last 8 characters, printable ASCII only
    (a client's header must not put raw bytes or terminal escapes into our log)."""
    tail = key_value(key)[-SHORT:]
    if tail.isascii() and tail.isprintable():
        return tail  # the usual id: no character to replace
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in tail)


def client_identity(headers: Mapping[str, str]) -> str:
    """A short hash of what identifies the client: the credential it sent, or for a logged-in
    CLI what stays the same when it refreshes its own login ('anon' when it sent none)."""
    for name in CLIENT_CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value:
            return _fingerprint(value)
    return "anon"


@functools.lru_cache(maxsize=1024)
def _fingerprint(value: str) -> str:
    # Remembered: every request of a client sends the same credential, and hashlib's sha256
    # goes through OpenSSL's algorithm lookup each time (~20 µs in a busy mitmdump). The
    # cache is process memory, like the flows holding the same header; nothing writes it out.
    basis = _login_identity(value) or value
    return hashlib.sha256(basis.encode("utf-8", "replace")).hexdigest()[:12]


ANTHROPIC_OAUTH = "sk-ant-oat"  # Claude Code's OAuth access tokens (opaque, rotating)


def _login_identity(value: str) -> str | None:
    """What stays the same across a logged-in CLI's own token refreshes, or None.

    A CLI logged in with OAuth (Codex with a ChatGPT login, Claude Code with a Claude login)
    sends an access token that changes every few hours; hashed as it is, its conversations
    would lose their pins at every refresh. A JWT (ChatGPT) names its user: issuer and subject,
    read unverified — they only choose a namespace for session ids, never grant anything.
    Claude's tokens are opaque: its logged-in clients share one namespace, whose session ids
    (UUIDs in X-Claude-Code-Session-Id) do not collide.
    """
    scheme, _, token = value.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else value.strip()
    if token.startswith(ANTHROPIC_OAUTH):
        return "login:anthropic"
    if token.count(".") != 2:
        return None  # an API key or another opaque credential: itself
    claims = jwt_claims(token)
    subject = claims.get("sub") if claims else None
    if not isinstance(subject, str) or not subject:
        return None
    issuer = claims.get("iss") if claims else None
    return f"login:{issuer if isinstance(issuer, str) else ''}:{subject}"


def namespaced(provider: str, client: str, value: str) -> str:
    return f"{provider}/{client}/{value}"


def from_headers(
    headers: Mapping[str, str], extra: Iterable[str] = ()
) -> tuple[str, str] | None:
    """(value, source) from the override or a client session header."""
    for name in (OVERRIDE_HEADER, *extra, *SESSION_HEADERS):
        value = headers.get(name)
        if value and (value := value.strip()) and len(value) <= _MAX_ID_LEN:
            return value, f"header:{name}"
    return None


def from_body(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(value, source) from the body fields the clients use as a conversation id."""
    value = body.get("prompt_cache_key")
    if isinstance(value, str) and _usable(value):
        return value, "body:prompt_cache_key"
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        sid = claude_code_session(metadata.get("user_id"))
        if sid:
            return sid, "body:metadata.user_id"
        sid = metadata.get("session_id")
        if isinstance(sid, str) and _usable(sid):
            return sid, "body:metadata.session_id"
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if isinstance(conversation, str) and _usable(conversation):
        return conversation, "body:conversation"
    return None


def claude_code_session(user_id: Any) -> str | None:
    """Claude Code's session id from metadata.user_id: a JSON string or the legacy form."""
    if not isinstance(user_id, str) or not user_id:
        return None
    if user_id.startswith("{"):
        try:
            parsed = json.loads(user_id)
        except (ValueError, RecursionError):
            return None
        sid = parsed.get("session_id") if isinstance(parsed, dict) else None
        return sid if _usable(sid) else None
    m = _LEGACY_USER_ID.search(user_id)
    return m.group(1) if m and _usable(m.group(1)) else None


def derived(provider: str, body: Mapping[str, Any]) -> str | None:
    """A hash of model + system prompt + first user message; None when there is no user text.

    Only text that is stable over a conversation's turns goes in: cache markers move to the
    newest message and Claude Code's billing line changes on every request.
    """
    model = body.get("model")
    if not isinstance(model, str):
        model = ""
    system_parts: list[str] = []
    first_user: str | None = None
    if "instructions" in body:
        system_parts.append(_text(body.get("instructions")))
    if "system" in body:
        system_parts.append(_text(body.get("system")))
    messages = body.get("messages")
    items = messages if isinstance(messages, list) else body.get("input")
    if isinstance(items, str):
        first_user = items
    elif isinstance(items, list):
        for item in items:
            if not isinstance(item, dict):
                continue
            role = item.get("role")
            if role in ("system", "developer"):
                system_parts.append(_text(item.get("content")))
            elif role == "user":
                first_user = _text(item.get("content"))
                break
    if not first_user:
        return None
    h = hashlib.sha256()
    for part in (provider, model, "\x00".join(system_parts), first_user):
        h.update(part.encode("utf-8", "replace"))
        h.update(b"\x1f")
    return "d-" + h.hexdigest()[:32]


def identify(
    provider: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any] | None,
    extra_headers: Iterable[str] = (),
    client: str | None = None,
) -> SessionId | None:
    """The identity order without the chain (chains.py); None means not pinned.

    `client` overrides the client namespace (a gate client, or a replayed flow's original).
    """
    client = client or client_identity(headers)
    found = from_headers(headers, extra_headers)
    if found is None and body is not None:
        found = from_body(body)
        if found is None:
            value = derived(provider, body)
            if value:
                found = (value, "derived")
    if found is None:
        return None
    value, source = found
    return SessionId(namespaced(provider, client, value), source)


def _usable(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value.strip()) <= _MAX_ID_LEN


def _text(content: Any) -> str:
    """The plain text of a string, a list of content blocks, or anything else ('' then)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    out = []
    for block in content:
        if isinstance(block, str):
            out.append(block)
        elif isinstance(block, dict):
            text = block.get("text")
            if isinstance(text, str) and not text.startswith(VOLATILE_PREFIXES):
                out.append(text)
    return "\n".join(out)
