"""Glue for the credential guard: the client gate in front of routing, and masking behind it.

Runs BEFORE the route addon (make_addons). On the way in it drops any masked
credential (a replayed flow's) and, when the accounts file has a `clients:` section, refuses a
request to an account host from an unknown client with a provider-shaped 401. On the way back,
once the request has gone upstream (response headers, response, error, WebSocket start), the
account headers routing set are replaced by a masked form. Never raises on traffic.
"""

from __future__ import annotations

import weakref

from mitmproxy import connection, http

from stickyroute.config.clients import Client, client_tokens
from stickyroute.core import masking
from stickyroute.core.classify import classify
from stickyroute.core.errors import error_body
from stickyroute.core.identify import OVERRIDE_HEADER, split_key
from stickyroute.keys import CLIENT, CLIENT_ID, META, SIGNED, RefusedMeta
from stickyroute.log import get_logger
from stickyroute.state import State

logger = get_logger(__name__)


class Guard:
    def __init__(self, state: State) -> None:
        self.state = state
        self._proxy_auth: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary())
        self._unmasked: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()

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
            if self.state.accounts.clients is not None:  # a gate fails closed
                self._refuse(flow, "openai", 500, "proxy_error", "stickyroute: internal error")

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
        gate = accounts.clients
        if gate is None or req.scheme != "https":
            return
        route = classify(accounts.provider_for_host(req.host.lower()), req.path)
        if route is None:
            return  # not an account host: the gate is about accounts only
        client: Client | None = None
        if replay and isinstance(flow.metadata.get(CLIENT), str):
            client = gate.get(flow.metadata[CLIENT])  # the credential itself is long gone
        if client is None:
            client = gate.match(client_tokens(req.headers,
                                              self._proxy_auth.get(flow.client_conn)))
        if client is None:
            self._refuse(flow, route.provider, 401, "unknown_client",
                         "stickyroute: this proxy is shared and needs a client token it knows "
                         "(as the API key, or as the proxy password); ask its operator for one")
            return
        allowed = [a for a in accounts.of_provider(route.provider) if client.allows(a.alias)]
        if not allowed:
            self._refuse(flow, route.provider, 403, "client_not_allowed",
                         f"stickyroute: client {client.name!r} may not use any "
                         f"{route.provider} account")
            return
        flow.metadata[CLIENT] = client.name
        flow.metadata[CLIENT_ID] = f"c-{client.name}"

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

    def _refuse(self, flow: http.HTTPFlow, provider: str, status: int, code: str,
                message: str) -> None:
        flow.response = http.Response.make(
            status, error_body(provider, status, message, code),
            {"content-type": "application/json", "x-stickyroute-error": code})
        flow.metadata[META] = RefusedMeta(error=code, message=message)
        logger.warning("refused %s %s: %s", flow.request.method,
                       flow.request.pretty_url, code)

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
