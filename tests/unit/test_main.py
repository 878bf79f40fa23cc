"""`python -m stickyroute import`: the stanza on stdout, advice on stderr, never a token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stickyroute.__main__ import main
from tests.unit.config.test_loginfile import ACCESS, CLAUDE_DOC, CODEX_DOC


def test_import_prints_the_stanza(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "auth.json"
    source.write_text(json.dumps(CODEX_DOC))
    assert main(["import", "sub-c", str(source), "--dir", str(tmp_path / "tok")]) == 0
    out, err = capsys.readouterr()
    target = (tmp_path / "tok" / "sub-c.json").resolve()
    assert out == f"  - alias: sub-c\n    provider: chatgpt\n    oauth_file: {target}\n"
    assert "single-use" in err and "Codex CLI auth.json" in err
    assert ACCESS not in out + err and "rt-1" not in out + err
    assert json.loads(target.read_text()) == CODEX_DOC


def test_import_errors_exit_1_without_a_token(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "half.json"
    source.write_text(json.dumps({"claudeAiOauth": {"accessToken": "SECRET-AT"}}))
    assert main(["import", "x", str(source), "--dir", str(tmp_path / "tok")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "claudeAiOauth.refreshToken is missing" in err
    assert "SECRET-AT" not in err


def test_python_dash_m(tmp_path: Path) -> None:
    source = tmp_path / "c.json"
    source.write_text(json.dumps(CLAUDE_DOC))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["addon", "."])}
    done = subprocess.run([sys.executable, "-m", "stickyroute", "import", "max", str(source),
                           "--dir", str(tmp_path / "tok")], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert done.returncode == 0, done.stderr
    assert "provider: anthropic" in done.stdout
    assert (tmp_path / "tok" / "max.json").stat().st_mode & 0o777 == 0o600
