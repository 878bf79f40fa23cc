"""Issue 8: 10 000 malformed requests through a real mitmdump with stickyroute.

0 crashes (the proxy answers all of them and is still up), 0 tracebacks in its output, no
account credential and no masked value to anything but an account host, and the memory of the
mitmdump process bounded although zstd/gzip/br/deflate bombs of 64 MiB go through it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devtools.fuzz import Sink, requests, rss_kib, run_fuzz
from devtools.harness import ANTHROPIC_KEYS, OPENAI_KEYS, REDIRECT_ADDON, STICKY_ADDON, raw_client
from fakeapi.oauth import OAuthLogins, write_login_file
from tests.e2e.helpers import MitmdumpFactory

# mitmdump alone manages ~110 small requests/s on a 2-CPU box, so 10 000 take ~2 minutes there.
COUNT = int(os.environ.get("STICKY_FUZZ_COUNT", "10000"))
RSS_GROWTH_LIMIT_KIB = 256 * 1024


@pytest.mark.timeout(600)
def test_ten_thousand_malformed_requests(mitmdump_factory: MitmdumpFactory,
                                         tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.yaml"
    lines = ["accounts:"]
    for key, name in {**OPENAI_KEYS, **ANTHROPIC_KEYS}.items():
        provider = "openai" if name.startswith("openai") else "anthropic"
        lines += [f"  - alias: {name}", f"    provider: {provider}", f"    api_key: {key}"]
    lines += ["  - alias: cg", "    provider: chatgpt", "    api_key: tok-cg-secret",
              "    account_id: acct-cg"]
    # subscription logins (their tokens live a day: the sink has no token endpoint)
    logins = OAuthLogins(access_ttl=86400)
    for alias, family in (("sub-cx", "chatgpt"), ("sub-cl", "anthropic")):
        write_login_file(tmp_path / f"{alias}.json", logins.create(alias, family, login=alias))
        lines += [f"  - alias: {alias}", f"    provider: {family}", f"    oauth_file: {alias}.json"]
    accounts.write_text("\n".join(lines) + "\n")
    accounts.chmod(0o600)
    secrets = {*OPENAI_KEYS, *ANTHROPIC_KEYS, "tok-cg-secret", *logins.secrets()}
    with Sink(secrets) as sink:
        proxy = mitmdump_factory([STICKY_ADDON, REDIRECT_ADDON],
                                 {"sticky_accounts": str(accounts), "fake_upstream": sink.address,
                                  "flow_detail": 0})
        assert proxy.proc is not None
        work = list(requests(COUNT))  # built before measuring: bombs take a while to make
        warm = run_fuzz(proxy, 300, seed=1)
        before = rss_kib(proxy.proc.pid)
        results = run_fuzz(proxy, COUNT, work=work)
        after = rss_kib(proxy.proc.pid)
        with raw_client(proxy) as c:  # still up and routing
            ok = c.post("https://api.openai.com/v1/responses", json={"model": "m", "input": "x"})
        out = proxy.stop()
    report = {"results": dict(results), "warm": dict(warm), "rss_before_kib": before,
              "rss_after_kib": after, "sink": dict(sink.seen)}
    print("fuzz:", json.dumps(report))
    assert ok.status_code == 200 and proxy.returncode is not None
    assert sum(results.values()) == COUNT
    assert not [k for k in results if k.startswith("client-error")], report
    assert set(results) <= {"200", "503"}, report  # the sink's answer, or our own clear error
    assert "Traceback" not in out and "could not route" not in out and "Addon error" not in out
    assert sink.seen["masked"] == 0, report
    assert after["VmRSS"] - before["VmRSS"] < RSS_GROWTH_LIMIT_KIB, report
