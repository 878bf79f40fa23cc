"""End-to-end harness: a real mitmdump subprocess and SDK clients that go through it.

Clients talk to the REAL host names (api.openai.com, ...) through the proxy, trusting the
proxy's CA; devtools/redirect_addon.py then sends those requests to the fake upstream. So the
addon under test sees exactly the traffic it would see in production.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import httpx2

from fakeapi import FakeUpstream

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
REDIRECT_ADDON = REPO / "devtools" / "redirect_addon.py"
NOOP_ADDON = REPO / "bench" / "noop_addon.py"
STICKY_ADDON = REPO / "addon" / "sticky.py"
OPENAI_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
CLIENT_PLACEHOLDER_KEY = "sk-client-placeholder"

_LISTENING = re.compile(r"listening at .*:(\d+)")
# mitmdump keeps running when a script fails to load; a test must not.
_LOAD_ERRORS = ("Error loading script", "Traceback (most recent call last)", "OptionsError",
                "Error logged during startup")


def find_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (None when it has none): the
    source address the kernel picks for a route out. A UDP connect sends no packet."""
    for probe in ("192.0.2.1", "10.255.255.255", "203.0.113.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((probe, 9))
            except OSError:
                continue
            address = str(s.getsockname()[0])
        if not address.startswith("127.") and address != "0.0.0.0":
            return address
    return None


def mitmdump_executable() -> str:
    """The console script of the running interpreter's environment (the venv's)."""
    sibling = Path(sys.executable).parent / "mitmdump"
    if sibling.exists():
        return str(sibling)
    found = shutil.which("mitmdump")
    if found is None:
        raise RuntimeError("mitmdump not found next to sys.executable nor on PATH")
    return found


def format_options(options: Mapping[str, Any]) -> list[str]:
    """--set arguments; sequences become one --set per item, bools true/false, None skipped."""
    args: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            text = ("true" if item else "false") if isinstance(item, bool) else str(item)
            args += ["--set", f"{name}={text}"]
    return args


class Mitmdump:
    """One mitmdump subprocess listening on 127.0.0.1, its output collected as it goes."""

    def __init__(
        self,
        scripts: Iterable[str | os.PathLike[str]] = (),
        options: Mapping[str, Any] | None = None,
        confdir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Iterable[str] = (),
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.scripts = [str(s) for s in scripts]
        self.options = dict(options or {})
        self.confdir = Path(confdir) if confdir else Path(tempfile.mkdtemp(prefix="mitm-"))
        self.port = port or find_free_port()
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.listen_host = listen_host  # "" listens on every interface
        self.proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def command(self) -> list[str]:
        args = [mitmdump_executable(), "--listen-host", self.listen_host, "-p", str(self.port)]
        for script in self.scripts:
            args += ["-s", script]
        base = {"confdir": str(self.confdir), "connection_strategy": "lazy",
                "termlog_verbosity": "info"}
        if str(STICKY_ADDON) in self.scripts:
            base["sticky_admin"] = ""  # many proxies at once: only tests that want it listen
        return args + format_options({**base, **self.options}) + self.extra_args

    def start(self, timeout: float = 30.0) -> Self:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), str(REPO / "addon"), env.get("PYTHONPATH", "")) if p)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            env.pop(name, None)  # our own clients set the proxy explicitly
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="backslashreplace",  # a stray byte in the log must not kill the reader
            env=env, cwd=str(REPO), bufsize=1, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True, name="mitmdump-out")
        self._reader.start()
        try:
            self._wait_ready(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self._lines.append(line)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if self.proc.poll() is not None:
                raise RuntimeError(f"mitmdump exited with {self.proc.returncode}:\n{out}")
            if any(marker in out for marker in _LOAD_ERRORS):
                raise RuntimeError(f"mitmdump reported an error while starting:\n{out}")
            if _LISTENING.search(out) and accepts(self.port) and self.ca_path.exists():
                return
            time.sleep(0.05)
        raise TimeoutError(f"mitmdump not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_for_output(self, pattern: str, timeout: float = 5.0) -> re.Match[str] | None:
        """First match of a regex in the output, waiting up to timeout for it to appear."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output())
            if match or time.monotonic() >= deadline:
                return match
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> str:
        """SIGINT (clean shutdown, addons' `done` hooks run), then SIGKILL; returns output."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        return self.output()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def accepts(port: int) -> bool:
    """Does something accept connections on 127.0.0.1:port?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def accounts_file(path: Path, keys: Mapping[str, str], provider: str = "openai") -> Path:
    """An accounts file with one account per key (key -> alias), private like a real one."""
    path.write_text("accounts:\n" + "".join(
        f"  - alias: {alias}\n    provider: {provider}\n    api_key: {key}\n"
        for key, alias in keys.items()))
    path.chmod(0o600)
    return path


def redirect_options(fake: Any, hosts: str | None = None) -> dict[str, Any]:
    """Options for devtools/redirect_addon.py pointing at a FakeUpstream."""
    opts: dict[str, Any] = {"fake_upstream": f"127.0.0.1:{fake.port}"}
    if hosts is not None:
        opts["fake_hosts"] = hosts
    return opts


# ---- clients through the proxy ----


def proxy_ssl_context(proxy: Mitmdump) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proxy.ca_path))


def raw_client(proxy: Mitmdump, timeout: float = 30.0, **kw: Any) -> httpx2.Client:
    """httpx2 client through the proxy, trusting its CA and ignoring *_PROXY variables."""
    return httpx2.Client(proxy=proxy.proxy_url, verify=proxy_ssl_context(proxy),
                         trust_env=False, timeout=timeout, **kw)


def async_raw_client(proxy: Mitmdump, timeout: float = 30.0, **kw: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(proxy=proxy.proxy_url, verify=proxy_ssl_context(proxy),
                              trust_env=False, timeout=timeout, **kw)


def openai_client(proxy: Mitmdump, api_key: str = CLIENT_PLACEHOLDER_KEY, **kw: Any) -> Any:
    import openai

    kw.setdefault("max_retries", 0)
    kw.setdefault("base_url", OPENAI_BASE_URL)  # not $OPENAI_BASE_URL: the real host name
    return openai.OpenAI(api_key=api_key, http_client=raw_client(proxy), **kw)


def async_openai_client(proxy: Mitmdump, api_key: str = CLIENT_PLACEHOLDER_KEY,
                        **kw: Any) -> Any:
    import openai

    kw.setdefault("max_retries", 0)
    kw.setdefault("base_url", OPENAI_BASE_URL)
    return openai.AsyncOpenAI(api_key=api_key, http_client=async_raw_client(proxy), **kw)


def anthropic_client(proxy: Mitmdump, api_key: str = CLIENT_PLACEHOLDER_KEY, **kw: Any) -> Any:
    import anthropic

    kw.setdefault("max_retries", 0)
    kw.setdefault("base_url", ANTHROPIC_BASE_URL)
    return anthropic.Anthropic(api_key=api_key, http_client=raw_client(proxy), **kw)


def async_anthropic_client(proxy: Mitmdump, api_key: str = CLIENT_PLACEHOLDER_KEY,
                           **kw: Any) -> Any:
    import anthropic

    kw.setdefault("max_retries", 0)
    kw.setdefault("base_url", ANTHROPIC_BASE_URL)
    return anthropic.AsyncAnthropic(api_key=api_key, http_client=async_raw_client(proxy), **kw)


# ---- the test world: accounts the fake upstream knows ----

OPENAI_KEYS = {f"sk-test-openai-{x}": f"openai-{x}" for x in "abc"}
ANTHROPIC_KEYS = {f"sk-ant-test-{x}": f"anthropic-{x}" for x in "abc"}
CHATGPT_ACCOUNTS = {"tok-chatgpt-a": ("chatgpt-a", "chatgpt-account-id-a")}


def write_accounts(path: Path, weights: dict[str, int] | None = None) -> Path:
    """The three OpenAI and three Anthropic test accounts (optionally with weights)."""
    lines = ["accounts:"]
    for keys, provider in ((OPENAI_KEYS, "openai"), (ANTHROPIC_KEYS, "anthropic")):
        for key, name in keys.items():
            lines += [f"  - alias: {name}", f"    provider: {provider}", f"    api_key: {key}"]
            if weights and name in weights:
                lines.append(f"    weight: {weights[name]}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def make_fake(**kw: Any) -> FakeUpstream:
    kw.setdefault("keys", {**OPENAI_KEYS, **ANTHROPIC_KEYS})
    kw.setdefault("chatgpt_accounts", CHATGPT_ACCOUNTS)
    return FakeUpstream(**kw)
