"""The README's commands cannot drift: every ```sh block in it is either run here, as written, or
names the test (or CI step) that runs its commands.

- ```sh runnable``` blocks run in order, each in bash (`set -euo pipefail`) from the repository's
  root, in a throwaway HOME (so `~/.mitmproxy` is the proxy's own fresh confdir), with `.venv/bin`
  first on PATH (as after `source .venv/bin/activate`: `python`, `mitmdump`), keeping the
  exports of the blocks before them. Options after `runnable`: `background port=N[,M...]`
  starts the block, waits until 127.0.0.1:N (and M...) accepts and stops it when the README is
  done; `timeout=S`. The `just try` block's log must then show the try-out's requests routed and
  the second turn of its conversation pinned where the first went.
- ```sh tested=PATH[,PATH...]``` blocks are run by PATH (a test module, `.ci/run`, ...): it must
  exist.
Any other ```sh block fails this test.

Also checked: every link in the README and in docs/ to a heading (`#anchor`) or a file resolves,
and the README's Options table lists exactly the options settings.py declares, with their
defaults.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.harness import REPO, accepts
from stickyroute.config.settings import OPTIONS

README = REPO / "README.md"
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)


@dataclass
class Block:
    line: int
    info: str
    body: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"


def sh_blocks(text: str) -> list[Block]:
    out = []
    for m in FENCE.finditer(text):
        words = m.group("info").split()
        if not words or words[0] not in ("sh", "bash", "shell", "console"):
            continue
        options = {}
        for word in words[1:]:
            key, _, value = word.partition("=")
            options[key] = value
        body = "\n".join(line[len(m.group("indent")):]
                         for line in m.group("body").splitlines())
        out.append(Block(text.count("\n", 0, m.start()) + 1, m.group("info"), body, options))
    return out


BLOCKS = sh_blocks(README.read_text())


def test_every_command_block_is_run_here_or_names_what_runs_it() -> None:
    unchecked = [b.where for b in BLOCKS if "runnable" not in b.options
                 and "tested" not in b.options]
    assert unchecked == [], ("mark each ```sh block `runnable` (this test runs it) or "
                             "`tested=PATH` (the test or CI step that does)")
    for b in BLOCKS:
        if "tested" in b.options:
            for path in b.options["tested"].split(","):
                assert path and (REPO / path).exists(), f"{b.where}: no {path!r}"
    assert sum("runnable" in b.options for b in BLOCKS) >= 3


def _ports(b: Block) -> list[int]:
    return [int(p) for p in b.options.get("port", "").split(",") if p]


# the try-out's log lines for its session-id conversation: `responses -> ALIAS | session ...
# (header:session-id) | new|hit | ...`
ROUTED = re.compile(r"stickyroute: responses -> (?P<alias>\S+) \| session (?P<session>.+?) "
                    r"\(header:session-id\) \| (?P<affinity>new|hit) \|")


def _assert_routed_and_pinned(log: Path) -> None:
    """The curl turns went through stickyroute: the first one placed, the next on its account."""
    deadline = time.monotonic() + 5  # a log line is written when its answer is complete
    while True:
        text = log.read_text(errors="replace")
        turns = [m.groupdict() for m in ROUTED.finditer(text)]
        if len(turns) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(turns) >= 2, f"`just try` routed fewer than two turns of a conversation:\n{text}"
    first = turns[0]
    later = [t for t in turns[1:] if t["session"] == first["session"]]
    assert first["affinity"] == "new" and later, text
    assert all((t["affinity"], t["alias"]) == ("hit", first["alias"]) for t in later), text


def test_the_runnable_blocks_run_as_written(tmp_path: Path) -> None:
    runnable = [b for b in BLOCKS if "runnable" in b.options]
    busy = [p for b in runnable for p in _ports(b) if accepts(p)]
    if busy:
        pytest.fail(f"ports {busy} are in use: the README's commands need them free")
    home = tmp_path / "home"
    home.mkdir()
    exports = tmp_path / "exports.sh"
    exports.write_text("")
    env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1",
           "PATH": os.pathsep.join((str(REPO / ".venv" / "bin"), os.environ.get("PATH", "")))}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
                 "STICKY_PORT", "STICKY_LISTEN", "STICKY_ACCOUNTS", "STICKY_ADMIN_TOKEN"):
        env.pop(name, None)
    background: list[tuple[Block, subprocess.Popen[bytes], Path]] = []
    try:
        for i, b in enumerate(runnable):
            timeout = float(b.options.get("timeout", 120) or 120)
            log = tmp_path / f"block-{i}.log"
            script = (f"set -euo pipefail\nsource {shlex.quote(str(exports))}\n{b.body}\n"
                      f"export -p > {shlex.quote(str(exports))}\n")
            if "background" in b.options:
                proc = subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env,
                                        stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
                background.append((b, proc, log))
                deadline = time.monotonic() + timeout
                for port in _ports(b):
                    while not accepts(port):
                        if proc.poll() is not None or time.monotonic() > deadline:
                            pytest.fail(f"{b.where}: nothing listens on {port}:\n"
                                        f"{log.read_text(errors='replace')}")
                        time.sleep(0.1)
                continue
            done = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, timeout=timeout,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out = done.stdout.decode(errors="replace")
            log.write_text(out)
            assert done.returncode == 0, f"{b.where} failed ({done.returncode}):\n{b.body}\n{out}"
        tryout = [log for b, _, log in background if b.body.lstrip().startswith("just try")]
        assert tryout, "the README starts no `just try` in the background"
        _assert_routed_and_pinned(tryout[0])
    finally:
        for _, proc, _ in reversed(background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


# ---- links and options -------------------------------------------------------------------

LINK = re.compile(r"(?P<image>!?)\[[^\]]*\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>.+?)[ \t]*#*[ \t]*$", re.M)


def _prose(text: str) -> str:
    """The text without its fenced blocks (a `# comment` in a shell block is no heading)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces
    to hyphens, a repeated one numbered."""
    seen: dict[str, int] = {}
    for m in HEADING.finditer(_prose(text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group("text")).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


DOCUMENTS = [README, *sorted((REPO / "docs").glob("*.md"))]


def _links(doc: Path, pictures: bool) -> list[tuple[str, Path, str]]:
    """(target as written, the file it names, its #anchor) of each relative link."""
    out = []
    for m in LINK.finditer(_prose(doc.read_text())):
        target = m.group("target")
        if bool(m.group("image")) != pictures or re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        out.append((target, (doc.parent / path).resolve() if path else doc, anchor))
    return out


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(doc: Path) -> None:
    """Every link to a heading (`#anchor`, `file.md#anchor`) or a file in the repository
    resolves."""
    broken = []
    for target, file, anchor in _links(doc, pictures=False):
        if not file.exists():
            broken.append(f"{target}: no {file.relative_to(REPO)}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}:\n" + "\n".join(broken)


def test_the_pictures_exist() -> None:
    """The README's pictures are committed files: the dashboard screenshot the browser test
    takes, and the cache plot of the last full `just bench`."""
    pictures = [file for doc in DOCUMENTS for _, file, _ in _links(doc, pictures=True)]
    assert pictures
    missing = [str(f.relative_to(REPO)) for f in pictures if not f.is_file()]
    assert not missing, f"pictures the docs show but the repository lacks: {missing}"


def test_the_contents_name_every_section() -> None:
    text = README.read_text()
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    linked = {m.group("target")[1:] for m in LINK.finditer(contents)}
    sections = {a for a in anchors("\n".join(
        line for line in _prose(text).splitlines() if line.startswith("## ")))}
    assert sections - linked - {"contents"} == set()


def test_the_options_table_is_settings_options() -> None:
    """The README's Options table: every option settings.py declares, none it does not, each
    with its default (empty defaults are described in words)."""
    section = README.read_text().split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(sticky_\w+)` \| ([^|]*) \|", section, re.M))
    assert sorted(rows) == sorted(o.name for o in OPTIONS)
    for o in OPTIONS:
        if o.default in ("", []):
            continue
        shown = str(o.default).lower() if isinstance(o.default, bool) else str(o.default)
        assert rows[o.name].startswith(f"`{shown}`"), (o.name, rows[o.name])
