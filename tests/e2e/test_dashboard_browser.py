"""The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Renders the accounts and sessions of a live run (real mitmdump, fake upstream, SDK requests),
an evict click really forgets the pin, and a screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx2
import pytest

from devtools.harness import REPO, openai_client
from tests.e2e.helpers import ask_anthropic, start_proxy

CHROMIUM = os.environ.get("STICKY_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"
PICTURE = REPO / "docs" / "images" / "dashboard.png"  # the README's picture of the dashboard
CHANGED = 0.02  # mean difference (0..1) of the downscaled pictures that counts as a new look
TOKEN = "browser-admin-token-1"
SYSTEM = "You are a careful assistant who answers briefly. " * 120  # long enough to be cached


def ask_openai(proxy: Any, session: str) -> Any:
    """A turn with a long, stable prefix, so the account's prompt cache shows in the charts."""
    with openai_client(proxy) as client:
        return client.responses.create(model="gpt-5", instructions=SYSTEM,
                                       input=f"hello from {session}",
                                       extra_headers={"session-id": session})

sync_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):  # CI installs it: must run there
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Any:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def live(module_mitmdump_factory: Any, module_fake_upstream: Any,
         tmp_path_factory: pytest.TempPathFactory) -> Any:
    proxy, base = start_proxy(module_mitmdump_factory, module_fake_upstream,
                              tmp_path_factory.mktemp("browser"), sticky_admin_token=TOKEN)
    return proxy, base, module_fake_upstream


def test_dashboard_shows_a_live_run_and_evicts(browser: Any, live: Any) -> None:
    proxy, base, fake = live
    for session in ("conv-browser-1", "conv-browser-2", "conv-browser-1"):
        ask_openai(proxy, session)
    fake.set_usage("anthropic-a", 300, used_percent=95, resets_in=5400, step=0)
    fake.set_usage("anthropic-a", 10080, used_percent=30, resets_in=3 * 86400, step=0)
    ask_anthropic(proxy, "conv-browser-3")

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/#token=" + TOKEN)
    page.wait_for_selector("#accounts tr[data-alias]")
    assert page.evaluate("location.hash") == ""  # the token leaves the address bar...
    assert page.evaluate("sessionStorage.getItem('stickyroute.token')") == TOKEN  # ...kept here
    aliases = page.locator("#accounts tr[data-alias]").evaluate_all(
        "rows => rows.map(r => r.dataset.alias)")
    assert aliases == ["oa", "ob", "an", "cg", "sub"]
    assert page.locator("#accounts tr[data-alias=an] .badge").first.inner_text() == "healthy"
    # a dead subscription login says so, and what to do
    page.wait_for_function(
        "() => document.querySelector('#accounts tr[data-alias=sub] .badge').textContent"
        " === 'revoked'", timeout=15_000)
    assert "log in again" in page.locator("#accounts tr[data-alias=sub]").inner_text()
    # its usage: draining, a bar per window with used % and the time to its reset
    assert page.locator("#accounts tr[data-alias=an] .usage .badge").inner_text() == "draining"
    bars = page.locator("#accounts tr[data-alias=an] .usage .window")
    texts = bars.evaluate_all("ws => ws.map(w => w.textContent)")
    assert re.fullmatch(r"5h 95% · resets in 1h (29|30)m", texts[0]), texts
    assert re.fullmatch(r"7d 30% · resets in 2d 23h", texts[1]), texts
    assert bars.first.locator(".bar > i").get_attribute("style") == "width:95%"
    assert page.locator("#accounts tr[data-alias=cg] .usage .badge").inner_text() == "ok"
    page.wait_for_selector("#sessions tr[data-session]")
    ids = page.locator("#sessions tr[data-session]").evaluate_all(
        "rows => rows.map(r => r.dataset.session)")
    assert sorted(i.rsplit("/", 1)[-1] for i in ids) == [
        "conv-browser-1", "conv-browser-2", "conv-browser-3"]
    assert page.locator("#sessions-count").inner_text() == "3"

    # Traffic between polls, so the charts have lines; then keep a picture of it.
    page.wait_for_function("() => history_.length >= 1")
    for session in ("conv-browser-1", "conv-browser-2", "conv-browser-1", "conv-browser-3"):
        (ask_anthropic if session.endswith("3") else ask_openai)(proxy, session)
    page.wait_for_function("() => history_.length >= 3", timeout=15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    keep_the_readme_picture_current(ARTIFACTS / "dashboard.png")

    target = next(i for i in ids if i.endswith("/conv-browser-2"))
    page.locator(f'#sessions tr[data-session="{target}"] button.evict').click()
    page.wait_for_selector(f'#sessions tr[data-session="{target}"]', state="detached")
    with httpx2.Client(base_url=base, trust_env=False,
                       headers={"authorization": f"Bearer {TOKEN}"}) as admin:
        left = [s["id"] for s in admin.get("/api/sessions").json()["sessions"]]
        assert target not in left and len(left) == 2

        page.locator("#accounts tr[data-alias=oa] button", has_text="disable").click()
        page.wait_for_function(
            "() => document.querySelector('#accounts tr[data-alias=oa] .badge').textContent"
            " === 'disabled'")
        assert admin.get("/api/accounts/oa").json()["health"]["state"] == "disabled"
        page.screenshot(path=str(ARTIFACTS / "dashboard-after-evict.png"), full_page=True)
    assert not errors, errors
    for secret in ("sk-test-openai-a", "sk-ant-test-a", "chatgpt-account-id-a"):
        assert secret not in page.content()


def test_dashboard_asks_for_the_token_and_rejects_a_wrong_one(browser: Any, live: Any) -> None:
    _, base, _ = live
    page = browser.new_page()
    page.goto(base + "/")
    page.wait_for_selector("#login:not(.hidden)")
    page.fill("#token", "wrong")
    page.click("#login button")
    page.wait_for_function(
        "() => document.getElementById('error').textContent.includes('not accepted')")
    assert page.locator("#app").is_hidden()
    page.fill("#token", TOKEN)
    page.click("#login button")
    page.wait_for_selector("#accounts tr[data-alias=oa]")
    assert page.locator("#login").is_hidden()


def keep_the_readme_picture_current(shot: Path) -> None:
    """The README shows the dashboard as this test sees it: when the page looks different from
    the committed picture (its layout, not the live numbers), the picture is replaced, and
    `git status` shows it to commit. Live figures change from run to run; a downscaled
    comparison ignores them."""
    from PIL import Image, ImageChops, ImageStat

    def small(path: Path) -> Image.Image:
        with Image.open(path) as img:
            return img.convert("L").resize((96, 96))

    if PICTURE.exists():
        new, old = small(shot), small(PICTURE)
        with Image.open(shot) as a, Image.open(PICTURE) as b:
            same_size = a.size == b.size
        difference = ImageStat.Stat(ImageChops.difference(new, old)).mean[0] / 255
        if same_size and difference < CHANGED:
            return
    PICTURE.parent.mkdir(parents=True, exist_ok=True)
    PICTURE.write_bytes(shot.read_bytes())
