"""Fake OpenAI / Anthropic / ChatGPT-backend upstream with per-account state, for tests.

    fake = FakeUpstream(keys={"sk-test-a": "acct-a"}, chatgpt_accounts={"tok": ("acct-c", "id")})
    fake.start()                      # or `with FakeUpstream(...) as fake:`
    fake.url, fake.port, fake.address
    fake.requests(account="acct-a")   # log snapshot, optionally filtered by field equality
    fake.add_fault(account="acct-a", kind="429", count=3, retry_after=2)
    fake.release_stalls(); fake.clear_faults(); fake.reset_log(); fake.reset(); fake.stop()
    FakeUpstream(..., usage=UsagePlan(windows=(300, 10080), steps=(1.0, 0.1)))
    fake.set_usage("acct-a", minutes=300, used_percent=95, resets_in=3600, step=1.0)

Subscription logins (fakeapi/oauth.py): `fake.oauth.create(account, "chatgpt" | "anthropic")`
issues tokens (write them with `oauth.write_login_file`); `FakeUpstream(access_ttl=SECONDS)`
sets how long access tokens live; `fake.oauth.refreshes(login)`, `.reused(login)`, `.stats()`.

Request headers the fake understands: `x-fake-output-tokens: N` (reply length, default 20),
`x-fake-chunk-delay: SECONDS` (pause between SSE events). Control endpoints for other
processes: GET /_fake/log, POST /_fake/reset[?all=1], POST /_fake/faults (JSON add_fault
kwargs), DELETE /_fake/faults, POST /_fake/release, POST /_fake/usage (JSON set_usage kwargs).
"""

from .faults import KINDS as FAULT_KINDS
from .upstream import FakeUpstream
from .usage import UsagePlan

__all__ = ["FAULT_KINDS", "FakeUpstream", "UsagePlan"]
