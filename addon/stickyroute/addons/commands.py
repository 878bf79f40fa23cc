"""Glue: the commands that list pins and accounts and evict pins (sticky.sessions,
sticky.accounts, sticky.evict, sticky.evict.account); sticky.disable/enable/admin are admin.py's.

Reads and steers the State through admin/views.py; a failure is a CommandError, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from mitmproxy import command, exceptions

from stickyroute.admin import views
from stickyroute.log import get_logger
from stickyroute.state import State

logger = get_logger(__name__)


def sticky_command[F: Callable[..., Any]](name: str) -> Callable[[F], F]:
    """mitmproxy's @command.command, with the decorated function's type kept for mypy."""
    return cast(Callable[[F], F], command.command(name))


class StickyCommands:
    def __init__(self, state: State) -> None:
        self.state = state

    @sticky_command("sticky.sessions")
    def sessions_command(self) -> Sequence[str]:
        """List live pins, most recent first: session, account, requests, idle, cache."""
        now = self.state.clock()
        return [views.session_line(p, now) for p in reversed(list(self.state.pins))]

    @sticky_command("sticky.accounts")
    def accounts_command(self) -> Sequence[str]:
        """List accounts: provider, health, pinned sessions, in-flight, requests, cache, a
        subscription login's state, and usage windows (used %, reset) with the usage state."""
        now = self.state.clock()
        return [views.account_line(self.state, a, now) for a in self.state.accounts.accounts]

    @sticky_command("sticky.evict")
    def evict_command(self, session: str) -> str:
        """Forget one session's pin (full key, its last part, or the short form shown in logs);
        its next request is pinned again."""
        keys = views.evict(self.state, session)
        if not keys:
            raise exceptions.CommandError(f"no pinned session {session!r}")
        logger.info("evicted %d pin(s) for session %s", len(keys), session)
        return f"evicted {', '.join(keys)}"

    @sticky_command("sticky.evict.account")
    def evict_account_command(self, alias: str) -> str:
        """Forget every pin of one account."""
        if self.state.accounts.get(alias) is None:
            raise exceptions.CommandError(f"no account {alias!r}")
        gone = views.evict_account(self.state, alias)
        logger.info("evicted %d pin(s) of account %s", len(gone), alias)
        return f"evicted {len(gone)} pin(s) of {alias}"
