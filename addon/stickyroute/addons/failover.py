"""Step 6 (glue): learn account health from answers, keep in-flight counts honest, and send a
failed request to another account before the client sees the failure.

Transparent retry, the mitmproxy-native way (mitmproxy 12):
- `responseheaders` runs before any byte of the body is sent to the client. For an error
  status we switch streaming off (`flow.response.stream = False`): mitmproxy then buffers the
  (small) error body, and nothing of this answer has reached the client yet.
- `response` may be async, and mitmproxy awaits it before it sends the response. There we
  build a new flow from the client's own request (the route addon keeps a copy from before it
  set the account's credentials) and hand it to mitmproxy's client-replay machinery
  (`clientplayback.ReplayHandler`, what `replay.client` uses, without its one-at-a-time
  queue). That runs the new flow through the whole addon chain and the proxy core again: our
  request hook picks the next healthy account and re-pins the session, later addons
  (redirects, upstream mode) apply, connections and TLS are mitmproxy's. We await it and put
  its response in place of the error. The client gets that answer, never the 429/5xx/401.
- The retry flow's body is buffered too (it has to be handed over whole), so a streamed
  answer that needed a retry reaches the client when it is complete. Only retried requests
  pay this; everything else streams as before.
- A subscription login's access token refused with a 401 (it expired early, or the clock is
  off): before the answer is classified, the login is refreshed once (single flight, the
  refused token named by its fingerprint so a token replaced meanwhile is not refreshed
  again) and the request is sent again, to the same account for a pinned conversation (hard
  pins included); a second 401 for it is not refreshed again. A dead login takes the account
  out (revoked: log in again), a failing refresh cools it until the next try; then the usual
  failover applies.
- Never retried: hard-pinned requests (their state lives on that account; they fail clearly;
  a subscription account's are kept for the resend above, and any other failure of theirs
  is answered by routing's own clear refusal, as the account is out by then),
  answers that are the client's fault (400, 404, ...), and dropped connections (mitmproxy has
  already answered 502 by the time the `error` hook runs; the account cools down, and the
  client's own retry lands elsewhere). Nothing is retried once the proxy stops, and a
  connection cut by the stop says nothing about its account (core/stop.py).
In-flight: routing adds 1 when it routes a flow (meta "inflight"); `_finish` takes it off
exactly once, on `response` or `error` (client disconnects included).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import cast

from mitmproxy import connection, ctx, http

from stickyroute.core.headers import field
from stickyroute.core.logins import after_refusal
from stickyroute.core.outcome import Kind, Outcome, classify
from stickyroute.core.stop import connection_outcome
from stickyroute.core.windows import from_headers
from stickyroute.keys import META, RETRY, Retried, RetryNote, RouteMeta
from stickyroute.log import get_logger
from stickyroute.state import Kept, State

from .follow import note_windows, routed
from .shutdown import stopping

logger = get_logger(__name__)

MAX_ATTEMPTS = 3  # other accounts tried after the first one failed
RETRY_ON = frozenset({Kind.RATE_LIMITED, Kind.QUOTA, Kind.REVOKED, Kind.OVERLOADED,
                      Kind.REFRESHED})
MAX_ERROR_BODY = 64 * 1024


async def replay_through_proxy(flow: http.HTTPFlow) -> None:
    """Send a flow through the addon chain and the proxy core; returns when it has an answer."""
    from mitmproxy.addons.clientplayback import ReplayHandler

    await ReplayHandler(flow, ctx.options).replay()


class Failover:
    def __init__(self, state: State, kept: Kept[http.Request],
                 replay: Callable[[http.HTTPFlow], Awaitable[None]] = replay_through_proxy
                 ) -> None:
        self.state = state
        self.kept = kept  # the client requests the route addon kept, by flow id
        self.replay = replay

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        meta = routed(flow)
        if meta is None or flow.response is None:
            return
        now = self.state.clock()
        note_windows(self.state, meta["account"], from_headers(flow.response.headers, now), now)
        if flow.response.status_code >= 400 or RETRY in flow.metadata:
            flow.response.stream = False  # hold it back: it may be replaced (see above)
        elif not flow.response.stream and (field(flow.response.headers, "content-type")
                                           or "").startswith("text/event-stream"):
            flow.response.stream = True  # tokens reach the client as they come

    async def response(self, flow: http.HTTPFlow) -> None:
        meta = routed(flow)
        request = self.kept.pop(flow.id)
        if meta is None or flow.response is None:
            return
        try:
            now = self.state.clock()
            status = flow.response.status_code
            outcome = classify(status, flow.response.headers,
                               _error_json(flow.response) if status >= 400 else None, now)
            if status == 401:
                outcome = await self._refresh_login(flow, meta) or outcome
            self._finish(flow, meta, outcome)
            if (outcome.kind in RETRY_ON and request is not None and RETRY not in flow.metadata
                    and not stopping(self.state)):  # a retry now would only be cut
                await self._retry(flow, meta, request, outcome)
        except Exception:  # never crash on traffic: the client gets what we have
            logger.exception("could not handle the answer to %s",
                             flow.request.pretty_url)

    def error(self, flow: http.HTTPFlow) -> None:
        self.kept.pop(flow.id)
        meta = routed(flow)
        if meta is None:
            return
        outcome, failed = connection_outcome(flow.error.msg if flow.error else "",
                                             flow.response is not None, stopping(self.state))
        self._finish(flow, meta, outcome, failed=failed)

    def _finish(self, flow: http.HTTPFlow, meta: RouteMeta, outcome: Outcome,
                failed: bool | None = None) -> None:
        alias = meta["account"]
        stats = self.state.ledger[alias]
        if meta.pop("inflight", False):
            stats.inflight -= 1
        if outcome.kind is not Kind.OK if failed is None else failed:
            stats.errors += 1
        meta["outcome"] = outcome.kind.value
        now = self.state.clock()
        before, after = self.state.health.record(alias, outcome, now)
        if before is not after:
            until = self.state.health.describe(alias, now).until
            logger.warning("account %s %s -> %s%s: %s", alias, before.value, after.value,
                           f" for {until - now:.0f} s" if until else "", outcome.reason)

    async def _refresh_login(self, flow: http.HTTPFlow, meta: RouteMeta) -> Outcome | None:
        """A 401 on a subscription login's token: refresh the login once and say what the 401
        means now (None: not a login's token, or already refreshed for this request)."""
        alias, st = meta["account"], self.state
        stale = meta.get("token_fingerprint")
        note = cast(RetryNote | None, flow.metadata.get(RETRY))
        if stale is None or (note is not None and alias in note.get("refreshed", [])):
            return None
        result = await st.refresher.refresh(alias, stale=stale)
        st.sync_logins()
        login = st.logins.get(alias)
        return after_refusal(result, login.retry_at if login is not None else 0.0)

    async def _retry(self, flow: http.HTTPFlow, meta: RouteMeta, request: http.Request,
                     outcome: Outcome) -> None:
        alias = meta["account"]
        # a refreshed login may serve again: sent once more to the same account, not excluded
        again = outcome.kind is Kind.REFRESHED
        tried, refreshed = ([], [alias]) if again else ([alias], [])
        why = [f"{alias}: {outcome.reason}"]
        answer: http.HTTPFlow | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            retry = http.HTTPFlow(flow.client_conn, connection.Server(address=None))
            retry.request = request.copy()
            retry.is_replay = "request"
            note = RetryNote(of=flow.id, attempt=attempt, exclude=list(tried))
            if refreshed:
                note["refreshed"] = list(refreshed)
            retry.metadata[RETRY] = note
            await self.replay(retry)
            got = routed(retry)
            if stopping(self.state) and (got is None or got.get("outcome") != Kind.OK.value):
                return  # the proxy stops: no other attempt; the client gets the first error
            failed = retry.response is None or (
                got is not None and got.get("outcome") in RETRY_ON)
            if got is not None and failed and attempt < MAX_ATTEMPTS:
                if got.get("outcome") == Kind.REFRESHED.value:
                    refreshed.append(got["account"])
                else:
                    tried.append(got["account"])
                reason = retry.error.msg if retry.error else got.get("outcome", "?")
                why.append(f"{got['account']}: {reason}")
                continue
            if retry.response is not None:
                answer = retry
            break
        if answer is None or answer.response is None:
            return  # nothing better to give: the client gets the first error
        got = routed(answer)
        served = got["account"] if got is not None else None
        # not routed: the proxy answered the retry itself (no account left), with its error
        said = served or str((answer.metadata.get(META) or {}).get("error"))
        flow.response = answer.response.copy()
        meta["retried"] = Retried(served_by=served, attempts=len(why), after=why)
        flow.comment = f"{flow.comment} | retried: {'; '.join(why)} -> {said}"
        logger.info("retried %s after %s -> %s %s", flow.request.path, "; ".join(why), said,
                    flow.response.status_code)


def _error_json(response: http.Response) -> object:
    raw = response.get_content(strict=False)
    if not raw or len(raw) > MAX_ERROR_BODY:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
