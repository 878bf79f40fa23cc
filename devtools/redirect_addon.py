"""Test-only mitmproxy addon: send provider API hosts to the local fake upstream.

Load it AFTER the stickyroute addon (`-s addon/sticky.py -s devtools/redirect_addon.py`), so
stickyroute sees and rewrites the request for the real host first. Requests for any other
host are left alone, unless `fake_hosts` is `*`: then every host goes to the fake, so a test of a
real client stays offline and sees every call it makes. It never touches headers except adding
`x-fake-original-host`.
"""

from __future__ import annotations

import logging

from mitmproxy import exceptions, http

logger = logging.getLogger(__name__)

API_HOSTS = "api.openai.com,api.anthropic.com,chatgpt.com"
OAUTH_HOSTS = "auth.openai.com,platform.claude.com"  # token endpoints: refreshes go there
DEFAULT_HOSTS = f"{API_HOSTS},{OAUTH_HOSTS}"


def parse_target(spec: str) -> tuple[str, int] | None:
    """'127.0.0.1:PORT' -> (host, port); '' -> None (redirect off)."""
    if not spec:
        return None
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {spec!r}")
    return host, int(port)


def parse_hosts(spec: str) -> frozenset[str]:
    return frozenset(h.strip().lower() for h in spec.split(",") if h.strip())


def wanted(hosts: frozenset[str], host: str) -> bool:
    return "*" in hosts or host in hosts


class RedirectToFake:
    def __init__(self) -> None:
        self.target: tuple[str, int] | None = None
        self.hosts: frozenset[str] = parse_hosts(DEFAULT_HOSTS)

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "fake_upstream", str, "",
            "HOST:PORT of the fake upstream that requests for fake_hosts are sent to, "
            "over plain HTTP. Empty turns the redirect off.",
        )
        loader.add_option(
            "fake_hosts", str, DEFAULT_HOSTS,
            "Comma-separated host names whose requests go to fake_upstream; * for every host.",
        )

    def configure(self, updated: set[str]) -> None:
        from mitmproxy import ctx

        if "fake_upstream" in updated:
            try:
                self.target = parse_target(ctx.options.fake_upstream)
            except ValueError as exc:
                raise exceptions.OptionsError(f"Cannot parse fake_upstream option: {exc}") from exc
        if "fake_hosts" in updated:
            self.hosts = parse_hosts(ctx.options.fake_hosts)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # A streamed request body (stream_large_bodies) makes mitmproxy connect upstream
        # before the `request` hook runs, so such flows must be redirected now.
        if flow.request.stream:
            self.request(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or self.target is None:
            return
        if "x-fake-original-host" in flow.request.headers:
            return  # already redirected at requestheaders
        host = flow.request.pretty_host.lower()
        if not wanted(self.hosts, host):
            return
        flow.request.headers["x-fake-original-host"] = host
        flow.request.scheme = "http"
        flow.request.host, flow.request.port = self.target
        flow.metadata["fake_redirect"] = host
        logger.debug("redirected %s%s to the fake upstream", host, flow.request.path)


addons = [RedirectToFake()]
