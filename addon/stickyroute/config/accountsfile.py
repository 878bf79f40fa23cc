"""The accounts file on disk: loaded at configure, loaded again whenever it changes.

Knows the file's last stamp (mtime, size) so the watch reads it only after an edit. A bad
edit never replaces working accounts: it is logged and the previous ones keep running. Warns
when a file that holds credentials is readable by others; never logs a credential.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable

from stickyroute.log import get_logger

from .accounts import AccountsError, AccountSet, load_accounts

logger = get_logger(__name__)

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
            logger.error("no accounts file %s: copy accounts.example.yaml there or set "
                         "sticky_accounts", os.path.abspath(path))
            self.use(AccountSet())
            self.stamp = None
            return
        accounts, stamp = load_accounts(path), stamp_of(path)
        self.use(accounts)
        self.stamp = stamp

    def reload_if_changed(self, path: str) -> bool:
        stamp = stamp_of(path)
        if stamp == self.stamp:
            return False
        try:
            accounts = load_accounts(path)
        except AccountsError as e:
            logger.warning("accounts file changed but cannot be used, keeping the previous "
                           "accounts: %s", e)
            self.stamp = stamp
            return False
        self.use(accounts)
        self.stamp = stamp
        return True


def announce(accounts: AccountSet) -> None:
    """Log the accounts now in service, and any credential file others can read."""
    summary = ", ".join(f"{a.alias} ({a.provider}{'' if a.enabled else ', disabled'})"
                        for a in accounts.accounts)
    logger.info("%d accounts: %s", len(accounts.accounts), summary or "none")
    for path, mode in loose_permissions(accounts.files):
        logger.warning("%s holds credentials but is readable by others (mode %s): chmod 600 %s",
                       path, mode, path)


def loose_permissions(paths: Iterable[str]) -> list[tuple[str, str]]:
    """(path, mode like '0644') of every file that group or others may read or write."""
    out = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if stat.S_IMODE(mode) & 0o077:
            out.append((path, f"{stat.S_IMODE(mode):04o}"))
    return out


def stamp_of(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size)
