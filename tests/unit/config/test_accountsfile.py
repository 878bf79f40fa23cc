"""config/accountsfile.py: an accounts or key file others can read is named in a warning."""

import logging

from mitmproxy.test import taddons

from stickyroute.config.accountsfile import loose_permissions
from tests.helpers import addons


def test_warns_when_accounts_or_key_file_readable_by_others(tmp_path, caplog):
    key = tmp_path / "key.txt"
    key.write_text("sk-from-file\n")
    key.chmod(0o644)
    p = tmp_path / "accounts.yaml"
    p.write_text("accounts:\n  - alias: f\n    provider: openai\n    api_key_file: key.txt\n")
    p.chmod(0o640)
    assert [m for _, m in loose_permissions([str(p), str(key)])] == ["0640", "0644"]
    sticky = addons()
    with caplog.at_level(logging.WARNING, "stickyroute"):
        with taddons.context(*sticky) as tctx:
            tctx.configure(sticky.options, sticky_accounts=str(p))
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "accounts.yaml" in warned and "key.txt" in warned and "sk-from-file" not in warned
    key.chmod(0o600)
    p.chmod(0o600)
    assert loose_permissions([str(p), str(key)]) == []
