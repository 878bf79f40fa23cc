"""Login files in the shapes the official CLIs write: read, updated in place, imported.

Codex CLI `auth.json`: {"tokens": {"id_token", "access_token", "refresh_token", "account_id"},
"last_refresh": RFC 3339, ...}. Claude Code `.credentials.json`: {"claudeAiOauth":
{"accessToken", "refreshToken", "expiresAt" (epoch ms), "scopes", "subscriptionType", ...}}.
A file written here keeps its shape and every key it had, so the CLI could read it again.

Writes are atomic (temp file in the same folder, fsync, rename) with mode 0600: a crash leaves
the old login or the new one, never half of each, and never a readable copy. A token must
never appear in an error message or a repr: errors name the file and the field.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .oauth import Tokens, chatgpt_account_id, jwt_expiry

CODEX = "codex"
CLAUDE = "claude"
PROVIDER_OF = {CODEX: "chatgpt", CLAUDE: "anthropic"}
SHAPE_NAMES = {CODEX: "a Codex CLI auth.json login", CLAUDE: "a Claude Code .credentials.json "
                                                             "login"}
DEFAULT_FOLDER = "~/.mitmproxy/stickyroute-tokens"
MAX_SIZE = 1 << 20  # a login file is a few KB; anything larger is not one
_ALIAS_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class LoginDoc:
    """A login file's content: its shape, its tokens, and the whole document as read."""

    shape: str  # CODEX | CLAUDE
    tokens: Tokens
    document: dict[str, Any] = field(repr=False, compare=False)

    @property
    def provider(self) -> str:
        return PROVIDER_OF[self.shape]


def parse_login(text: str) -> LoginDoc:
    """A login file's text -> LoginDoc; ValueError says what is missing (never a value)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if isinstance(data.get("claudeAiOauth"), dict):
        return LoginDoc(CLAUDE, _claude_tokens(data["claudeAiOauth"]), data)
    if isinstance(data.get("tokens"), dict):
        return LoginDoc(CODEX, _codex_tokens(data["tokens"]), data)
    if "OPENAI_API_KEY" in data or "tokens" in data:
        raise ValueError("a Codex auth.json without a ChatGPT login (no 'tokens'): log in "
                         "with ChatGPT, not an API key")
    raise ValueError("neither a Codex auth.json ('tokens') nor a Claude Code "
                     ".credentials.json ('claudeAiOauth')")


def _codex_tokens(tokens: dict[str, Any]) -> Tokens:
    access = _text(tokens, "access_token", "tokens.access_token")
    refresh = _text(tokens, "refresh_token", "tokens.refresh_token")
    id_token = tokens.get("id_token")
    account_id = tokens.get("account_id")
    if not isinstance(account_id, str) or not account_id:
        account_id = chatgpt_account_id(access)
    return Tokens(access, refresh, jwt_expiry(access),
                  id_token if isinstance(id_token, str) and id_token else None, account_id)


def _claude_tokens(oauth: dict[str, Any]) -> Tokens:
    access = _text(oauth, "accessToken", "claudeAiOauth.accessToken")
    refresh = _text(oauth, "refreshToken", "claudeAiOauth.refreshToken")
    expires_ms = oauth.get("expiresAt")
    if isinstance(expires_ms, bool) or not isinstance(expires_ms, int | float):
        expires_at = jwt_expiry(access)
    else:
        expires_at = float(expires_ms) / 1000
    return Tokens(access, refresh, expires_at)


def _text(obj: dict[str, Any], key: str, name: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is missing or empty")
    return value


def render_login(doc: LoginDoc, tokens: Tokens, now: float) -> str:
    """The document with new tokens, in its own shape; every other key stays as it was."""
    data = json.loads(json.dumps(doc.document))  # a deep copy of plain JSON
    if doc.shape == CODEX:
        slot = data["tokens"]
        slot["access_token"] = tokens.access_token
        slot["refresh_token"] = tokens.refresh_token
        if tokens.id_token:
            slot["id_token"] = tokens.id_token
        if tokens.account_id:
            slot["account_id"] = tokens.account_id
        data["last_refresh"] = rfc3339(now)
        return json.dumps(data, indent=2) + "\n"
    slot = data["claudeAiOauth"]
    slot["accessToken"] = tokens.access_token
    slot["refreshToken"] = tokens.refresh_token
    if tokens.expires_at is not None:
        slot["expiresAt"] = int(tokens.expires_at * 1000)
    return json.dumps(data, separators=(",", ":"))


def rfc3339(now: float) -> str:
    """UTC with microseconds and a Z, as the Codex CLI writes last_refresh."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- files ---------------------------------------------------------------------------------
def read_login(path: str | Path) -> LoginDoc:
    """Read and parse a login file; ValueError('PATH: reason')."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SIZE + 1)
    except OSError as e:
        raise ValueError(f"{p}: cannot read: {e.strerror or type(e).__name__}") from None
    if len(raw) > MAX_SIZE:
        raise ValueError(f"{p}: too large for a login file")
    try:
        return parse_login(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not UTF-8 text") from None
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from None


def write_login(path: str | Path, doc: LoginDoc, tokens: Tokens, now: float) -> LoginDoc:
    """Replace the file's tokens atomically (mode 0600); returns what is now on disk."""
    text = render_login(doc, tokens, now)
    atomic_write(Path(path), text.encode())
    return LoginDoc(doc.shape, tokens, json.loads(text))


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via a temp file in the same folder, fsync it, rename it over, fsync the folder."""
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # the rename happened; only its durability across a power cut is weaker
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---- importing a CLI's login ----------------------------------------------------------------
@dataclass(frozen=True)
class Imported:
    alias: str
    provider: str
    shape: str
    path: Path


def import_login(alias: str, source: str | Path, folder: str | Path = DEFAULT_FOLDER,
                 replace: bool = False) -> Imported:
    """Copy a CLI's login into our token folder (0700) as ALIAS.json (0600); ValueError."""
    if not _ALIAS_RE.match(alias):
        raise ValueError(f"alias {alias!r} must be 1-64 letters, digits, '.', '_' or '-'")
    doc = read_login(Path(source).expanduser())
    target_dir = Path(folder).expanduser().resolve()
    try:
        target_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(target_dir.stat().st_mode) & 0o077:
            target_dir.chmod(0o700)
    except OSError as e:
        raise ValueError(f"{target_dir}: cannot create the token folder: "
                         f"{e.strerror or type(e).__name__}") from None
    target = target_dir / f"{alias}.json"
    if target.exists() and not replace:
        raise ValueError(f"{target} already exists (another login under this alias): pass "
                         "--replace to overwrite it")
    text = (json.dumps(doc.document, indent=2) + "\n" if doc.shape == CODEX
            else json.dumps(doc.document, separators=(",", ":")))
    try:
        atomic_write(target, text.encode())
    except OSError as e:
        raise ValueError(f"{target}: cannot write: {e.strerror or type(e).__name__}") from None
    return Imported(alias, doc.provider, doc.shape, target)


def stanza(imported: Imported) -> str:
    """The accounts-file entry that uses an imported login (no token in it)."""
    return (f"  - alias: {imported.alias}\n"
            f"    provider: {imported.provider}\n"
            f"    oauth_file: {imported.path}\n")


def blank_login(provider: str) -> LoginDoc:
    """An empty document of the shape a provider's CLI writes, to put tokens in."""
    empty = Tokens("", "")
    if provider == "chatgpt":
        return LoginDoc(CODEX, empty, {"OPENAI_API_KEY": None, "tokens": {}, "last_refresh": ""})
    if provider == "anthropic":
        return LoginDoc(CLAUDE, empty, {"claudeAiOauth": {}})
    raise ValueError(f"provider {provider!r} has no OAuth login")
