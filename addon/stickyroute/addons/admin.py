"""Glue for the admin surface: serves the admin API, metrics and dashboard on `sticky_admin`
(admin/server.py), chooses its token, and offers the operator commands sticky.disable,
sticky.enable and sticky.admin.

It answers nothing without the bearer token but the static page; the admin API's address has
its own rule (loopback by default), separate from the proxy's. A failure to listen is a
warning: the proxy's real job goes on without its admin API.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import exceptions
from mitmproxy.utils.asyncio_utils import create_task

from stickyroute.admin import metrics
from stickyroute.admin.api import AdminApi
from stickyroute.admin.server import AdminServer
from stickyroute.config.accounts import Account
from stickyroute.core.health import DISABLED_BY_OPERATOR
from stickyroute.log import get_logger
from stickyroute.state import State

from .commands import sticky_command

logger = get_logger(__name__)

PAGE = Path(__file__).parent.parent / "admin" / "dashboard.html"
TOKEN_ENV = "STICKY_ADMIN_TOKEN"


class StickyAdmin:
    def __init__(self, state: State) -> None:
        self.state = state
        self.server = AdminServer()
        self.token_source = ""
        self._generated: str | None = None
        self._registry = metrics.registry_for(state)
        self._page: bytes | None = None
        self._address: tuple[str, int] | None = None
        self._running = False
        self._announced = False
        self._restart: asyncio.Task[None] | None = None

    @property
    def api(self) -> AdminApi | None:
        return self.server.api

    @property
    def url(self) -> str | None:
        return self.server.url

    # ---- options and lifecycle ---------------------------------------------------------
    def configure(self, updated: set[str]) -> None:
        if not {"sticky_admin", "sticky_admin_token"} & updated:
            return
        settings = self.state.settings
        token, self.token_source = settings.admin_token, "sticky_admin_token"
        if not token:
            token, self.token_source = os.environ.get(TOKEN_ENV, "").strip(), TOKEN_ENV
        if not token:
            self._generated = self._generated or secrets.token_urlsafe(24)
            token, self.token_source = self._generated, "generated"
        self.server.api = AdminApi(self.state, token, self.page, self.metrics)
        if self._running and settings.admin != self._address:
            self._restart = create_task(self._serve_again(), name="stickyroute admin restart",
                                        keep_ref=True)

    async def running(self) -> None:
        self._running = True
        await self._start()

    async def done(self) -> None:
        self._running = False
        await self.server.stop()

    async def _serve_again(self) -> None:
        await self.server.stop()
        await self._start()

    async def _start(self) -> None:
        address = self._address = self.state.settings.admin
        if address is None:
            return
        host, port = address
        try:
            await self.server.start(host, port)
        except OSError as e:
            # A warning, not an error: mitmdump exits on errors logged at start (e.g. a second
            # proxy on this machine), and the proxy's real job goes on without its admin API.
            logger.warning("cannot serve the admin API on %s:%d: %s; the proxy runs without it "
                           "(set sticky_admin to another HOST:PORT, or empty)", host, port,
                           e.strerror or e)
            return
        if self.token_source == "generated" and not self._announced:
            logger.warning("admin API and dashboard at %s#token=%s (a generated token; set "
                           "sticky_admin_token or %s to choose one)", self.url,
                           self._generated, TOKEN_ENV)
        else:
            logger.info("admin API and dashboard at %s (token from %s)", self.url,
                        self.token_source)
        self._announced = True

    def page(self) -> bytes:
        if self._page is None:
            self._page = PAGE.read_bytes()
        return self._page

    def metrics(self) -> tuple[bytes, str]:
        return metrics.render(self._registry)

    # ---- commands ----------------------------------------------------------------------
    @sticky_command("sticky.disable")
    def disable_command(self, alias: str) -> str:
        """Take an account out of rotation: no new traffic until sticky.enable."""
        account = self._account(alias)
        self.state.health.disable(account.alias, DISABLED_BY_OPERATOR, self.state.clock())
        logger.info("account %s disabled by an operator", alias)
        return f"{alias} disabled: no new traffic until sticky.enable {alias}"

    @sticky_command("sticky.enable")
    def enable_command(self, alias: str) -> str:
        """Put an account back into rotation."""
        account = self._account(alias)
        if not self.state.health.enable(account.alias, self.state.clock()):
            raise exceptions.CommandError(f"{alias} is disabled in the accounts file "
                                          "(enabled: false); only the file can enable it")
        logger.info("account %s enabled by an operator", alias)
        return f"{alias} enabled"

    @sticky_command("sticky.admin")
    def admin_command(self) -> Sequence[str]:
        """Where the admin API and dashboard are served, and where their token comes from."""
        url = self.url
        if url is None:
            return ["the admin API is off (set sticky_admin=HOST:PORT)"]
        return [f"dashboard: {url} (open with #token=<token>)",
                f"token from: {self.token_source}",
                f"metrics: curl -H 'Authorization: Bearer <token>' {url}metrics"]

    def _account(self, alias: str) -> Account:
        account = self.state.accounts.get(alias)
        if account is None:
            raise exceptions.CommandError(f"no account {alias!r}")
        return account
