"""Before step 1: may this request spend the accounts at all?

A client on this machine (a loopback address) may. Any other client only when the accounts file
has a `clients:` gate and the client presents one of its tokens, or when the operator set
`sticky_allow_remote`. Everything else gets a provider-shaped refusal that says what to do and is
never sent upstream. Requests to hosts no account covers are not this module's business. Pure:
the glue passes in the address mitmproxy reports and the tokens the client presented.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import NamedTuple

from stickyroute.config.accounts import AccountSet
from stickyroute.config.clients import Client


class Admitted(NamedTuple):
    client: Client | None  # the gate client that authenticated (None: there is no gate)


class Refused(NamedTuple):
    status: int
    code: str
    message: str


@functools.lru_cache(maxsize=1024)  # asked for every request, of a few addresses
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped IPv6 loopback (::ffff:127.0.0.1); names never are."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def admit(provider: str, accounts: AccountSet, *, local: bool, allow_remote: bool,
          known_client: str | None, tokens: Callable[[], list[str]]) -> Admitted | Refused:
    """The verdict for a request to one of `provider`'s account hosts.

    `local`: the client is this machine's (a loopback address, mitmproxy's `local` capture
    mode, or the operator's own replay). `known_client`: the gate client a replayed flow had
    (its credential is long gone). `tokens()`: what the client presented, read only when a gate
    must check it.
    """
    gate = accounts.clients
    if gate is None:
        if local or allow_remote:
            return Admitted(None)
        return Refused(403, "remote_client_not_allowed",
                       "stickyroute: this proxy signs requests only for clients on its own "
                       "machine, and this client connected from another address. Use the "
                       "proxy locally, add a clients: gate with a token for this client to the "
                       "accounts file, or start it with --set sticky_allow_remote=true")
    client = gate.get(known_client) if known_client else None
    if client is None:
        client = gate.match(tokens())
    if client is None:
        return Refused(401, "unknown_client",
                       "stickyroute: this proxy is shared and needs a client token it knows "
                       "(as the API key, or as the proxy password); ask its operator for one")
    if not any(client.allows(a.alias) for a in accounts.of_provider(provider)):
        return Refused(403, "client_not_allowed",
                       f"stickyroute: client {client.name!r} may not use any {provider} account")
    return Admitted(client)
