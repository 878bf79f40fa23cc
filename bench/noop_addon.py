"""Baseline addon for `just bench`: hooks that do nothing, so only mitmproxy's cost remains.

It streams SSE answers as stickyroute does (which must, for interactive clients): otherwise
the baseline would buffer whole streams, a different and cheaper job for mitmproxy.
"""

from __future__ import annotations

from mitmproxy import http


class Noop:
    def request(self, flow: http.HTTPFlow) -> None:
        pass

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if resp is not None and "text/event-stream" in resp.headers.get("content-type", ""):
            resp.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        pass


addons = [Noop()]
