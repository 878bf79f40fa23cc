# stickyroute tasks. Every recipe builds .venv itself with a Python >= 3.12 it finds
# (PYTHON, then python3.13/python3.12, then pyenv).

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
py := venv / "bin" / "python"
port := env_var_or_default("STICKY_PORT", "8080")
listen := env_var_or_default("STICKY_LISTEN", "127.0.0.1")
accounts := env_var_or_default("STICKY_ACCOUNTS", "accounts.yaml")

# list recipes
default:
    @just --list

# create .venv and install the addon with its test tools
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x "{{py}}" ]; then
      "$(./scripts/find-python)" -m venv "{{venv}}"
    fi
    stamp="{{venv}}/.installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
      "{{py}}" -m pip install -q --disable-pip-version-check -e ".[dev]"
      touch "$stamp"
    fi

# run the proxy on 127.0.0.1:8080 (STICKY_LISTEN, STICKY_PORT) with accounts.yaml (STICKY_ACCOUNTS)
run *ARGS: setup
    "{{venv}}/bin/mitmdump" -s addon/sticky.py --set sticky_accounts={{accounts}} --listen-host {{listen}} -p {{port}} {{ARGS}}

# run mitmweb (flows with stickyroute comments) on 127.0.0.1:8080, UI on :8081
web *ARGS: setup
    "{{venv}}/bin/mitmweb" -s addon/sticky.py --set sticky_accounts={{accounts}} --listen-host {{listen}} -p {{port}} {{ARGS}}

# copy a Codex / Claude Code login into the token folder; prints the accounts-file stanza
import ALIAS FILE *ARGS: setup
    "{{py}}" -m stickyroute import "{{ALIAS}}" "{{FILE}}" {{ARGS}}

# the fake upstream on 127.0.0.1:9100 with the test accounts of devtools/tryout-accounts.yaml
fake: setup
    "{{py}}" -m fakeapi --port 9100 --key sk-try-openai-a=openai-a --key sk-try-openai-b=openai-b --key sk-try-anthropic-a=anthropic-a --key sk-try-anthropic-b=anthropic-b

# stickyroute on 127.0.0.1:8080 in front of `just fake` (admin API on :8091, token try-token)
try *ARGS: setup
    #!/usr/bin/env bash
    set -euo pipefail
    dir="$(mktemp -d)"
    install -m 600 devtools/tryout-accounts.yaml "$dir/accounts.yaml"
    exec "{{venv}}/bin/mitmdump" -s addon/sticky.py -s devtools/redirect_addon.py \
      --listen-host {{listen}} -p {{port}} --set connection_strategy=lazy \
      --set sticky_accounts="$dir/accounts.yaml" --set sticky_store=memory \
      --set sticky_admin_token=try-token --set fake_upstream=127.0.0.1:9100 {{ARGS}}

# offline demo: fake upstream + proxy + 3 accounts + 6 conversations, sticky vs not
demo: setup
    "{{py}}" -m demo

# the pinned Codex CLI and Claude Code into .clients/ (npm, no global install) for the e2e tests
clients:
    ./scripts/install-clients

# the import contracts, then the tests (unit; e2e: mitmdump, SDKs, redis, Chromium, real CLIs)
test *ARGS: setup
    "{{venv}}/bin/lint-imports" --no-cache
    "{{py}}" -m pytest {{ARGS}}

# ruff, mypy (strict) and the import contracts (pyproject.toml [tool.importlinter])
lint: setup
    "{{py}}" -m ruff check addon tests fakeapi demo bench devtools
    "{{py}}" -m mypy addon/stickyroute
    "{{venv}}/bin/lint-imports" --no-cache

# cache economics + overhead + table scale report (bench/results/latest.md); --quick, --smoke
bench *ARGS: setup
    "{{py}}" -m bench {{ARGS}}

# soak: real SDK clients, many conversations, random faults, one proxy restart (not in `just test`)
soak *ARGS: setup
    PYTHONPATH=addon:. "{{py}}" -m devtools.soak {{ARGS}}
