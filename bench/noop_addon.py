"""Baseline addon for `just bench`: hooks that do nothing, so only mitmproxy's cost remains."""

from __future__ import annotations

from mitmproxy import http


class Noop:
    def request(self, flow: http.HTTPFlow) -> None:
        pass

    def response(self, flow: http.HTTPFlow) -> None:
        pass


addons = [Noop()]
