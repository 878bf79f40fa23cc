"""Glue for configuration: declares the sticky_* options, takes parsed settings into service,
loads the accounts file at configure and again whenever it changes on disk.

A bad option or a bad accounts file at configure is an OptionsError (mitmproxy refuses it and
the old settings keep running); a bad live edit of the file is logged and ignored.
"""

from __future__ import annotations

import asyncio

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader
from mitmproxy.utils.asyncio_utils import create_task

from stickyroute.config.accounts import AccountsError, AccountSet
from stickyroute.config.accountsfile import WATCH_INTERVAL, AccountsFile, announce
from stickyroute.config.settings import OPTIONS, parse_settings
from stickyroute.log import get_logger
from stickyroute.state import State

from .sweep import every

logger = get_logger(__name__)


class StickyOptions:
    def __init__(self, state: State) -> None:
        self.state = state
        self.accounts_file = AccountsFile(self._use_accounts)
        self._watch: asyncio.Task[None] | None = None
        self._running = False

    def load(self, loader: Loader) -> None:
        for option in OPTIONS:
            loader.add_option(option.name, option.typespec, option.default, option.help,
                              choices=option.choices)

    def configure(self, updated: set[str]) -> None:
        if not any(name.startswith("sticky_") for name in updated):
            return
        try:
            settings = parse_settings(lambda name: getattr(ctx.options, name))
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        if "sticky_accounts" in updated:
            try:
                self.accounts_file.load(settings.accounts_path,
                                        ctx.options.default("sticky_accounts"))
            except AccountsError as e:
                raise exceptions.OptionsError(f"Cannot load sticky_accounts: {e}") from None
        was_open = self.state.settings.allow_remote
        self.state.use_settings(settings)
        if self._running and settings.allow_remote and not was_open:
            self._warn_open()

    def _use_accounts(self, accounts: AccountSet) -> None:
        self.state.use_accounts(accounts)
        announce(accounts)

    def running(self) -> None:
        self._running = True
        if self.state.settings.allow_remote:
            self._warn_open()
        self._watch = create_task(every(lambda: WATCH_INTERVAL, self.reload_accounts_if_changed),
                                  name="stickyroute accounts file watch", keep_ref=True)

    def done(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    @staticmethod
    def _warn_open() -> None:
        logger.warning("sticky_allow_remote is on: any client that can reach this proxy's port "
                       "spends the accounts (a clients: gate in the accounts file lets in only "
                       "clients with a token)")

    def reload_accounts_if_changed(self) -> bool:
        return self.accounts_file.reload_if_changed(self.state.settings.accounts_path)
