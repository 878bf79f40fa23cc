"""Login files: both CLI shapes read, rewritten in place (atomically, 0600), imported."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from stickyroute.config.loginfile import (
    CLAUDE,
    CODEX,
    atomic_write,
    import_login,
    parse_login,
    read_login,
    rfc3339,
    stanza,
    write_login,
)
from stickyroute.config.oauth import Tokens

NOW = 1_800_000_000.0


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


ACCESS = jwt({"exp": NOW + 600, "https://api.openai.com/auth": {"chatgpt_account_id": "acct-jwt"}})
CODEX_DOC = {
    "OPENAI_API_KEY": None,
    "tokens": {"id_token": "id-1", "access_token": ACCESS, "refresh_token": "rt-1",
               "account_id": "acct-1"},
    "last_refresh": "2026-01-02T03:04:05.123456Z",
    "agent_identity": {"keep": True},
}
CLAUDE_DOC = {
    "claudeAiOauth": {"accessToken": "sk-ant-oat01-a", "refreshToken": "sk-ant-ort01-r",
                      "expiresAt": int((NOW + 3600) * 1000), "scopes": ["user:inference"],
                      "subscriptionType": "max", "rateLimitTier": "default_claude_max_20x"},
    "mcpOAuth": {"other": "kept"},
}


def test_codex_shape() -> None:
    doc = parse_login(json.dumps(CODEX_DOC))
    assert doc.shape == CODEX and doc.provider == "chatgpt"
    assert doc.tokens == Tokens(ACCESS, "rt-1", NOW + 600, "id-1", "acct-1")


def test_codex_account_id_from_the_jwt_when_the_file_has_none() -> None:
    data = json.loads(json.dumps(CODEX_DOC))
    del data["tokens"]["account_id"]
    assert parse_login(json.dumps(data)).tokens.account_id == "acct-jwt"


def test_claude_shape() -> None:
    doc = parse_login(json.dumps(CLAUDE_DOC))
    assert doc.shape == CLAUDE and doc.provider == "anthropic"
    assert doc.tokens == Tokens("sk-ant-oat01-a", "sk-ant-ort01-r", NOW + 3600)


@pytest.mark.parametrize("text, match", [
    ("{", "not JSON"),
    ("[]", "not a JSON object"),
    ('{"OPENAI_API_KEY": "sk-x"}', "without a ChatGPT login"),
    ('{"tokens": null}', "without a ChatGPT login"),
    ('{"other": 1}', "neither a Codex auth.json"),
    ('{"tokens": {"access_token": "a"}}', r"tokens.refresh_token is missing"),
    ('{"tokens": {"refresh_token": "r", "access_token": " "}}', r"tokens.access_token is missing"),
    ('{"claudeAiOauth": {"accessToken": "a", "refreshToken": 5}}',
     r"claudeAiOauth.refreshToken is missing"),
])
def test_not_a_login(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_login(text)


def test_rewrite_codex_keeps_shape_and_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(CODEX_DOC))
    path.chmod(0o644)
    doc = read_login(path)
    new = Tokens("acc-2", "rt-2", NOW + 7200, "id-2", "acct-1")
    written = write_login(path, doc, new, NOW)
    data = json.loads(path.read_text())
    assert data == {**CODEX_DOC, "tokens": {"id_token": "id-2", "access_token": "acc-2",
                                            "refresh_token": "rt-2", "account_id": "acct-1"},
                    "last_refresh": "2027-01-15T08:00:00.000000Z"}
    assert list(data) == list(CODEX_DOC)  # key order kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert written.tokens == new and read_login(path).tokens.refresh_token == "rt-2"
    assert [p.name for p in tmp_path.iterdir()] == ["auth.json"]  # no temp file left


def test_rewrite_claude_sets_expires_at_in_ms(tmp_path: Path) -> None:
    path = tmp_path / ".credentials.json"
    path.write_text(json.dumps(CLAUDE_DOC))
    doc = read_login(path)
    write_login(path, doc, Tokens("acc-2", "ref-2", NOW + 28800.5), NOW)
    data = json.loads(path.read_text())
    assert data["claudeAiOauth"] == {**CLAUDE_DOC["claudeAiOauth"], "accessToken": "acc-2",
                                     "refreshToken": "ref-2",
                                     "expiresAt": int((NOW + 28800.5) * 1000)}
    assert data["mcpOAuth"] == {"other": "kept"}
    assert read_login(path).tokens.expires_at == NOW + 28800.5


def test_read_errors_name_the_file_not_the_content(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope.json: cannot read"):
        read_login(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=r"bad.json: not UTF-8"):
        read_login(bad)
    secret = tmp_path / "s.json"
    secret.write_text('{"tokens": {"access_token": "SECRET-VALUE"}}')
    with pytest.raises(ValueError) as e:
        read_login(secret)
    assert "SECRET-VALUE" not in str(e.value)


def test_atomic_write_failure_leaves_the_old_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.json"
    path.write_text("old")

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_rfc3339() -> None:
    assert rfc3339(0.25) == "1970-01-01T00:00:00.250000Z"


def test_import_copies_into_a_private_folder(tmp_path: Path) -> None:
    source = tmp_path / "auth.json"
    source.write_text(json.dumps(CODEX_DOC))
    folder = tmp_path / "tokens"
    imported = import_login("work-c", source, folder)
    assert imported.path == folder.resolve() / "work-c.json"
    assert imported.provider == "chatgpt" and imported.shape == CODEX
    assert json.loads(imported.path.read_text()) == CODEX_DOC
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(imported.path.stat().st_mode) == 0o600
    text = stanza(imported)
    assert text == (f"  - alias: work-c\n    provider: chatgpt\n"
                    f"    oauth_file: {imported.path}\n")
    assert ACCESS not in text and "rt-1" not in text


def test_import_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    source = tmp_path / "c.json"
    source.write_text(json.dumps(CLAUDE_DOC))
    import_login("max", source, tmp_path / "t")
    with pytest.raises(ValueError, match="already exists"):
        import_login("max", source, tmp_path / "t")
    again = import_login("max", source, tmp_path / "t", replace=True)
    assert again.provider == "anthropic"


def test_import_tightens_a_loose_folder(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir(mode=0o755)
    source = tmp_path / "c.json"
    source.write_text(json.dumps(CLAUDE_DOC))
    import_login("max", source, folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize("alias", ["", "a b", "../x", "x" * 65])
def test_import_checks_the_alias(tmp_path: Path, alias: str) -> None:
    with pytest.raises(ValueError, match="alias"):
        import_login(alias, tmp_path / "none.json", tmp_path / "t")
