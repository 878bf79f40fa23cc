"""The admin API against a real mitmdump, fake upstream and SDK clients."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from typing import Any

import httpx2
import pytest

from devtools.harness import REPO
from tests.e2e.helpers import (
    ADMIN_SECRETS,
    ADMIN_TOKEN,
    ask_anthropic,
    ask_openai,
    start_proxy,
)

OPENAPI = REPO / "addon" / "stickyroute" / "admin" / "openapi.yaml"


@pytest.fixture(scope="module")
def live(module_mitmdump_factory: Any, module_fake_upstream: Any,
         tmp_path_factory: pytest.TempPathFactory) -> Any:
    proxy, base = start_proxy(module_mitmdump_factory, module_fake_upstream,
                              tmp_path_factory.mktemp("admin"), sticky_admin_token=ADMIN_TOKEN)
    with httpx2.Client(base_url=base, trust_env=False, timeout=10,
                       headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        yield proxy, admin, module_fake_upstream


def session_of(admin: Any, value: str) -> dict[str, Any]:
    found = [s for s in admin.get("/api/sessions?limit=1000").json()["sessions"]
             if s["id"].endswith("/" + value)]
    assert len(found) == 1, found
    return found[0]


def test_endpoints_show_a_live_run(live: Any) -> None:
    proxy, admin, fake = live
    ask_openai(proxy, "conv-state-1")
    ask_openai(proxy, "conv-state-1")
    ask_anthropic(proxy, "conv-state-2")
    state = admin.get("/api/state").json()
    assert state["sessions"]["count"] >= 2 and state["uptime"] > 0
    by_alias = {a["alias"]: a for a in state["accounts"]}
    assert set(by_alias) == {"oa", "ob", "an", "cg", "sub"}
    assert by_alias["sub"]["login"]["file"].endswith("sub.json")
    assert by_alias["oa"]["login"] is None
    s1 = session_of(admin, "conv-state-1")
    assert s1["requests"] == 2 and s1["alias"] in ("oa", "ob")
    assert by_alias[s1["alias"]]["affinity"].get("hit", 0) >= 1
    assert session_of(admin, "conv-state-2")["alias"] == "an"
    assert admin.get("/api/sessions?account=an").json()["total"] >= 1
    assert admin.get("/api/accounts").json()["accounts"][:4] == [  # sub's expires_in ticks
        admin.get(f"/api/accounts/{a}").json() for a in ("oa", "ob", "an", "cg")]
    metrics = admin.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert re.search(r'stickyroute_requests_total\{account="an",affinity="new"\} [1-9]',
                     metrics.text)
    page = admin.get("/", headers={"authorization": ""})
    assert page.status_code == 200 and "<canvas" in page.text


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN])
@pytest.mark.parametrize("method,path", [
    ("GET", "/api/state"), ("GET", "/api/sessions"), ("GET", "/api/accounts"),
    ("GET", "/api/accounts/oa"), ("GET", "/metrics"), ("DELETE", "/api/sessions/conv-state-1"),
    ("DELETE", "/api/accounts/oa/sessions"), ("POST", "/api/accounts/oa/disable"),
    ("POST", "/api/accounts/oa/enable"),
])
def test_401_without_the_right_token(live: Any, auth: str | None, method: str,
                                     path: str) -> None:
    proxy, admin, _ = live
    base = str(admin.base_url)
    headers = {"authorization": auth} if auth else {}
    with httpx2.Client(base_url=base, trust_env=False, timeout=10) as anon:
        r = anon.request(method, path, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": "unauthorized", "message": r.json()["error"]["message"]}}
    for word in ("oa", "openai", "sessions", "conv-"):
        assert word not in r.json()["error"]["message"].replace("sessions", "") or word == "sessions"
    assert admin.get("/api/accounts/oa").json()["health"]["state"] == "healthy"


def test_eviction_takes_effect_on_the_next_request(live: Any) -> None:
    proxy, admin, fake = live
    ask_openai(proxy, "conv-evict")
    ask_openai(proxy, "conv-evict")
    before = session_of(admin, "conv-evict")
    assert before["requests"] == 2
    alias = before["alias"]
    new_before = admin.get(f"/api/accounts/{alias}").json()["affinity"].get("new", 0)
    r = admin.delete("/api/sessions/" + before["id"].replace("/", "%2F"))
    assert r.status_code == 200 and r.json() == {"evicted": [before["id"]]}
    assert admin.delete("/api/sessions/conv-evict").status_code == 404
    assert not [s for s in admin.get("/api/sessions").json()["sessions"]
                if s["id"] == before["id"]]
    fake.reset_log()
    ask_openai(proxy, "conv-evict")
    after = session_of(admin, "conv-evict")
    assert after["requests"] == 1 and after["created"] > before["created"]  # pinned again
    served = [e["account"] for e in fake.requests() if e["path"].endswith("/responses")]
    assert served == [{"oa": "openai-a", "ob": "openai-b"}[after["alias"]]]
    news = sum(admin.get(f"/api/accounts/{a}").json()["affinity"].get("new", 0)
               for a in ("oa", "ob"))
    assert news > new_before
    assert proxy.wait_for_output(r"session nv-evict .*\| new")


def test_evict_account_and_disable_steer_real_traffic(live: Any) -> None:
    proxy, admin, fake = live
    for i in range(4):
        ask_openai(proxy, f"conv-steer-{i}")
    r = admin.delete("/api/accounts/oa/sessions")
    assert r.status_code == 200 and r.json()["alias"] == "oa"
    assert admin.get("/api/sessions?account=oa").json()["total"] == 0
    r = admin.post("/api/accounts/oa/disable", json={"reason": "maintenance"})
    assert r.json()["health"] == {"state": "disabled", "reason": "maintenance", "until": None}
    try:
        fake.reset_log()
        for i in range(4):
            ask_openai(proxy, f"conv-steer-{i}")
        assert {e["account"] for e in fake.requests() if e["path"].endswith("/responses")} == {
            "openai-b"}
        assert "state=\"disabled\"} 1.0" in admin.get("/metrics").text
    finally:
        assert admin.post("/api/accounts/oa/enable").json()["health"]["state"] == "healthy"
    assert admin.post("/api/accounts/nope/enable").status_code == 404


def test_no_credential_in_any_answer(live: Any) -> None:
    proxy, admin, _ = live
    ask_openai(proxy, "conv-secret")
    ask_anthropic(proxy, "conv-secret")
    answers = [admin.get(p) for p in ("/", "/api/state", "/api/sessions", "/api/accounts",
                                      "/api/accounts/ob", "/api/accounts/cg", "/metrics",
                                      "/api/sessions?account=nope", "/api/nothing")]
    answers += [admin.post("/api/accounts/ob/disable"), admin.post("/api/accounts/ob/enable"),
                admin.delete("/api/sessions/conv-secret"), admin.delete("/api/sessions/x")]
    with httpx2.Client(trust_env=False) as anon:
        answers.append(anon.get(str(admin.base_url) + "/api/state"))
    assert len({a.status_code for a in answers}) > 2
    for answer in answers:
        for secret in ADMIN_SECRETS:
            assert secret not in answer.text, (answer.request.url, secret)
            assert secret not in str(answer.headers)
    for secret in ADMIN_SECRETS:
        assert secret not in proxy.output()


def test_a_bad_client_gets_400_and_the_proxy_carries_on(live: Any) -> None:
    proxy, admin, _ = live
    host, port = admin.base_url.host, admin.base_url.port
    for garbage in (b"\x16\x03\x01\x00\xa5garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost\r\n\r\n"):
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(garbage)
            assert s.recv(100).startswith(b"HTTP/1.1 400")
    big = admin.post("/api/accounts/oa/disable", content=b"{" + b" " * 70_000 + b"}")
    assert big.status_code == 413
    assert admin.get("/api/state").status_code == 200
    assert ask_openai(proxy, "conv-after-garbage").output


def test_accounts_show_usage_windows(live: Any) -> None:
    """Before the schemathesis run, so its schema checks see an account with windows."""
    proxy, admin, fake = live
    fake.set_usage("anthropic-a", 300, used_percent=95, resets_in=3600, step=0)
    ask_anthropic(proxy, "conv-windows")
    an = admin.get("/api/accounts/an").json()
    assert (an["draining"], an["usage_state"]) == (True, "draining")
    assert [(w["minutes"], w["used_percent"], w["status"]) for w in an["windows"]] == [
        (300, 95, "draining")]
    assert 3500 < an["windows"][0]["resets_at"] - admin.get("/api/state").json()["now"] <= 3600
    assert ('stickyroute_account_window_used_ratio{account="an",window_minutes="300"} 0.95'
            in admin.get("/metrics").text)
    assert proxy.wait_for_output(r"account an is draining: 95% of its 300-minute window used; "
                                 r"new conversations go elsewhere")


def test_schemathesis_finds_no_5xx_and_no_schema_violation(live: Any) -> None:
    _, admin, _ = live
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", str(OPENAPI),
           "--url", str(admin.base_url), "-H", f"Authorization: Bearer {ADMIN_TOKEN}",
           "--checks", "all", "--phases", "examples,coverage,fuzzing", "--max-examples", "10",
           "--seed", "1", "--no-color", "--workers", "1",
           "--suppress-health-check", "filter_too_much"]  # a generator limit, not the API
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout
