"""The accounts file on disk: loaded at configure, loaded again whenever it changes.

Knows the file's last stamp (mtime, size) so the watch reads it only after an edit. A bad
edit never replaces working accounts: it is logged and the previous ones keep running.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from stickyroute.core import masking
from stickyroute.core.prices import load_checked

from .accounts import AccountsError, AccountSet

logger = logging.getLogger("stickyroute")

WATCH_INTERVAL = 1.0  # seconds between looks at the file's stamp

Stamp = tuple[float, int]


class AccountsFile:
    def __init__(self, use: Callable[[AccountSet], None]) -> None:
        self.use = use  # takes a loaded set into service
        self.stamp: Stamp | None = None

    def load(self, path: str, default: str) -> None:
        """Raises AccountsError. No file at the default place: an empty set, said loudly."""
        if not os.path.exists(path) and path == default:
            # Fatal at mitmdump's start (through its error check); we run with no accounts
            # until the file appears.
            logger.error("stickyroute: no accounts file %s: copy accounts.example.yaml "
                         "there or set sticky_accounts", os.path.abspath(path))
            self.use(AccountSet())
            self.stamp = None
            return
        accounts, stamp = load_checked(path), stamp_of(path)
        self.use(accounts)
        self.stamp = stamp

    def reload_if_changed(self, path: str) -> bool:
        stamp = stamp_of(path)
        if stamp == self.stamp:
            return False
        try:
            accounts = load_checked(path)
        except AccountsError as e:
            logger.warning("stickyroute: accounts file changed but cannot be used, keeping the "
                           "previous accounts: %s", e)
            self.stamp = stamp
            return False
        self.use(accounts)
        self.stamp = stamp
        return True


def announce(accounts: AccountSet) -> None:
    """Log the accounts now in service, and any credential file others can read."""
    summary = ", ".join(f"{a.alias} ({a.provider}{'' if a.enabled else ', disabled'})"
                        for a in accounts.accounts)
    logger.info("stickyroute: %d accounts: %s", len(accounts.accounts), summary or "none")
    for path, mode in masking.loose_permissions(accounts.files):
        logger.warning("stickyroute: %s holds credentials but is readable by others (mode "
                       "%s): chmod 600 %s", path, mode, path)


def stamp_of(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size)
