"""Glue: the commands that list pins and accounts and evict pins (sticky.sessions,
sticky.accounts, sticky.evict, sticky.evict.account); sticky.disable/enable/admin are admin.py's.

Reads and steers a StickyRoute through views.py; a failure is a CommandError, never a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mitmproxy import command, exceptions

from stickyroute.admin import views

if TYPE_CHECKING:
    from .route import StickyRoute

logger = logging.getLogger("stickyroute")


class StickyCommands:
    def __init__(self, route: StickyRoute) -> None:
        self.route = route

    @command.command("sticky.sessions")
    def sessions_command(self) -> Sequence[str]:
        """List live pins, most recent first: session, account, requests, idle, cache."""
        now = self.route.clock()
        return [views.session_line(p, now) for p in reversed(list(self.route.pins))]

    @command.command("sticky.accounts")
    def accounts_command(self) -> Sequence[str]:
        """List accounts: provider, health, pinned sessions, in-flight, requests, cache."""
        now = self.route.clock()
        return [views.account_line(self.route, a, now) for a in self.route.accounts.accounts]

    @command.command("sticky.evict")
    def evict_command(self, session: str) -> str:
        """Forget one session's pin (full key, its last part, or the short form shown in logs);
        its next request is pinned again."""
        keys = views.evict(self.route, session)
        if not keys:
            raise exceptions.CommandError(f"no pinned session {session!r}")
        logger.info("stickyroute: evicted %d pin(s) for session %s", len(keys), session)
        return f"evicted {', '.join(keys)}"

    @command.command("sticky.evict.account")
    def evict_account_command(self, alias: str) -> str:
        """Forget every pin of one account."""
        if self.route.accounts.get(alias) is None:
            raise exceptions.CommandError(f"no account {alias!r}")
        gone = views.evict_account(self.route, alias)
        logger.info("stickyroute: evicted %d pin(s) of account %s", len(gone), alias)
        return f"evicted {len(gone)} pin(s) of {alias}"
