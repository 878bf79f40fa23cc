"""Glue for the credential guard: who may spend the accounts in front of routing, and masking
behind it.

Runs BEFORE the route addon (make_addons). On the way in it drops any masked credential (a
replayed flow's) and lets a request to an account host through only as core/admission.py
says: clients on this machine, clients the `clients:` gate knows, or anyone when
sticky_allow_remote is set; the rest get a provider-shaped 401/403, logged once a minute per
address. On the way back, once the request has gone upstream (response headers, response,
error, WebSocket start), the account headers routing set are replaced by a masked form. Never
raises on traffic; on an internal error it refuses rather than sign for an unchecked client.
"""

from __future__ import annotations

import weakref

from mitmproxy import connection, http
from mitmproxy.proxy import mode_specs

from stickyroute.config.clients import client_tokens
from stickyroute.core import masking
from stickyroute.core.admission import Refused, admit, is_loopback
from stickyroute.core.classify import classify
from stickyroute.core.errors import error_body
from stickyroute.core.identify import OVERRIDE_HEADER, split_key
from stickyroute.keys import CLIENT, CLIENT_ID, META, SIGNED, RefusedMeta
from stickyroute.log import get_logger
from stickyroute.state import State

logger = get_logger(__name__)

QUIET = 60.0  # seconds between two log lines about refusing the same address
MAX_QUIET = 4096  # addresses remembered for that


class Guard:
    def __init__(self, state: State) -> None:
        self.state = state
        self._proxy_auth: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary())
        self._unmasked: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()
        self._said: dict[str, float] = {}  # address -> when its last refusal was logged

    # ---- on the way in ---------------------------------------------------------------------
    def http_connect(self, flow: http.HTTPFlow) -> None:
        # HTTPS_PROXY=http://name:token@host:port sends the token once, on CONNECT.
        value = flow.request.headers.get("proxy-authorization")
        if value:
            self._proxy_auth[flow.client_conn] = value

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        self._unmasked.add(flow)
        try:
            self._check(flow)
        except Exception:
            logger.exception("guard failed on %s", flow.request.pretty_url)
            if self.state.accounts.clients is not None or not _local(flow):  # fail closed
                self._refuse(flow, "openai", Refused(500, "proxy_error",
                                                     "stickyroute: internal error"))

    def _check(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        dropped = masking.drop_masked(req.headers)
        replay = flow.is_replay == "request"
        if dropped and not replay:
            logger.warning("dropped masked credential header(s) %s from %s",
                           ", ".join(dropped), req.pretty_url)
        if replay:
            self._same_session_as_before(flow)
        accounts = self.state.accounts
        if req.scheme != "https":
            return
        route = classify(accounts.provider_for_host(req.host.lower()), req.path)
        if route is None:
            return  # not an account host: nothing of ours is spent on it
        known = flow.metadata.get(CLIENT) if replay else None
        verdict = admit(
            route.provider, accounts,
            local=replay or _local(flow),  # a replay is the operator's own request
            allow_remote=self.state.settings.allow_remote,
            known_client=known if isinstance(known, str) else None,
            tokens=lambda: client_tokens(req.headers, self._proxy_auth.get(flow.client_conn)))
        if isinstance(verdict, Refused):
            self._refuse(flow, route.provider, verdict)
        elif verdict.client is not None:
            flow.metadata[CLIENT] = verdict.client.name
            flow.metadata[CLIENT_ID] = f"c-{verdict.client.name}"

    @staticmethod
    def _same_session_as_before(flow: http.HTTPFlow) -> None:
        """A replay belongs to the session it had (its body may now hold our cache key)."""
        before = flow.metadata.get(META)
        if not isinstance(before, dict):
            return
        if before.get("client") and CLIENT_ID not in flow.metadata:
            flow.metadata[CLIENT_ID] = before["client"]
        key = before.get("session_key")
        parts = split_key(key) if isinstance(key, str) else None
        if parts is not None and OVERRIDE_HEADER not in flow.request.headers:
            flow.request.headers[OVERRIDE_HEADER] = parts.value

    def _refuse(self, flow: http.HTTPFlow, provider: str, refused: Refused) -> None:
        status, code, message = refused
        flow.response = http.Response.make(
            status, error_body(provider, status, message, code),
            {"content-type": "application/json", "x-stickyroute-error": code})
        flow.metadata[META] = RefusedMeta(error=code, message=message)
        address = _address(flow)
        now = self.state.clock()
        if now - self._said.get(address, float("-inf")) >= QUIET:
            if len(self._said) >= MAX_QUIET:
                self._said.pop(next(iter(self._said)))
            self._said[address] = now
            logger.warning("refused %s %s from %s: %s (said once a minute per address)",
                           flow.request.method, flow.request.pretty_url, address, code)

    # ---- once the request has gone upstream (routing notes what it set in SIGNED) ----------
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._mask(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._mask(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._mask(flow)

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self._mask(flow)

    def done(self) -> None:
        # Flows still in flight at shutdown are written by the save addon after us.
        for flow in list(self._unmasked):
            self._mask(flow)

    def _mask(self, flow: http.HTTPFlow) -> None:
        self._unmasked.discard(flow)
        signed = flow.metadata.get(SIGNED)
        if not (isinstance(signed, list) and len(signed) == 2):
            return
        alias, names = signed  # [alias, header names], as routing set it
        try:
            masking.mask_headers(flow.request.headers, names, alias)
        except Exception:
            logger.exception("could not mask a flow's credential; dropping it")
            for name in names:
                flow.request.headers.pop(name, None)


def _address(flow: http.HTTPFlow) -> str:
    peer = flow.client_conn.peername
    return str(peer[0]) if peer else "?"


def _local(flow: http.HTTPFlow) -> bool:
    """Is the client this machine's? A loopback address, or mitmproxy's local capture mode
    (it only ever captures this machine's own processes, whatever address they use)."""
    if isinstance(flow.client_conn.proxy_mode, mode_specs.LocalMode):
        return True
    return is_loopback(_address(flow))
