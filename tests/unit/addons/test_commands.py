"""addons/commands.py: sticky.sessions, sticky.accounts, sticky.evict and their errors."""

import pytest
from mitmproxy import exceptions

from tests.helpers import flow


def test_commands(addon_ctx):
    addon, tctx, _ = addon_ctx
    commands = addon.commands
    addon.route.request(flow(body={"input": "x"}, headers=[("session-id", "conv-9")]))
    assert any("conv-9" in line for line in tctx.command(commands.sessions_command))
    assert any(line.startswith("oa openai healthy sessions=")
               for line in commands.accounts_command())
    commands.evict_command("conv-9")
    assert len(addon.state.pins) == 0
    with pytest.raises(exceptions.CommandError):
        commands.evict_command("nope")
    with pytest.raises(exceptions.CommandError):
        commands.evict_account_command("nope")
