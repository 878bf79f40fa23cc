"""Test-only addon: GET http://sticky.probe/state answers stickyroute's per-account in-flight
counts, error counts and health as JSON, so e2e tests can look inside the mitmdump process;
POST http://sticky.probe/enable/ALIAS and /disable/ALIAS are the operator's switches, and
POST http://sticky.probe/reset forgets pins and health (in-flight counts stay: they are live).

Load it after addon/sticky.py. Never use it outside tests.
"""

from __future__ import annotations

import json

from mitmproxy import ctx, http

from stickyroute.core.health import Health

PROBE_HOST = "sticky.probe"


class StickyProbe:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.request.pretty_host != PROBE_HOST:
            return
        route = ctx.master.addons.get("stickyroute")
        now = route.clock()
        path = flow.request.path
        if path.startswith("/enable/"):
            route.health.enable(path.removeprefix("/enable/"), now)
        elif path.startswith("/disable/"):
            route.health.disable(path.removeprefix("/disable/"), "switched off by the test", now)
        elif path == "/reset":
            for pin in route.pins:
                route.pins.remove(pin.session)
            route.health = Health()
        state = {
            "accounts": {a.alias: {"inflight": route.ledger[a.alias].inflight,
                                   "errors": route.ledger[a.alias].errors,
                                   "health": route.health.describe(a.alias, now)}
                         for a in route.accounts.accounts},
            "kept_requests": len(route.client_requests),
            "pins": {p.session.rsplit("/", 1)[-1]: p.alias for p in route.pins},
        }
        flow.response = http.Response.make(200, json.dumps(state),
                                           {"content-type": "application/json"})


addons = [StickyProbe()]
