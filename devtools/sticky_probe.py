"""Test-only addon: GET http://sticky.probe/state answers stickyroute's per-account in-flight
counts, error counts and health as JSON, so e2e tests can look inside the mitmdump process;
POST http://sticky.probe/enable/ALIAS and /disable/ALIAS are the operator's switches, and
POST http://sticky.probe/reset forgets pins, health, usage windows and warm prefixes (in-flight
counts stay: they are live).

Load it after addon/sticky.py. Never use it outside tests.
"""

from __future__ import annotations

import json

from mitmproxy import ctx, http

from stickyroute.core.health import Health
from stickyroute.core.identify import key_value
from stickyroute.state import State

PROBE_HOST = "sticky.probe"


class StickyProbe:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.request.pretty_host != PROBE_HOST:
            return
        sticky = ctx.master.addons.get("stickyroute").parts  # addons/dispatch.py
        state: State = sticky.state
        kept = sticky.failover.kept
        now = state.clock()
        path = flow.request.path
        if path.startswith("/enable/"):
            state.health.enable(path.removeprefix("/enable/"), now)
        elif path.startswith("/disable/"):
            state.health.disable(path.removeprefix("/disable/"), "switched off by the test", now)
        elif path == "/reset":
            for pin in state.pins:
                state.pins.remove(pin.session)
            state.health = Health()
            state.windows.forget(())
            state.warm.forget(())
        answer = {
            "accounts": {a.alias: {"inflight": state.ledger[a.alias].inflight,
                                   "errors": state.ledger[a.alias].errors,
                                   "health": _health(state, a.alias, now),
                                   "usage": state.windows.state(a.alias, now).value}
                         for a in state.accounts.accounts},
            "kept_requests": len(kept),
            "pins": {key_value(p.session): p.alias for p in state.pins},
        }
        flow.response = http.Response.make(200, json.dumps(answer),
                                           {"content-type": "application/json"})


def _health(state: State, alias: str, now: float) -> dict[str, object]:
    h = state.health.describe(alias, now)
    return {"state": h.state.value, "reason": h.reason, "until": h.until}


addons = [StickyProbe()]
