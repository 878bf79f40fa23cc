"""keys.py: what stickyroute keeps in flow.metadata has the declared shape, is plain JSON (mitmproxy
saves it with the flow) and never holds a credential."""

import json
from typing import NotRequired, get_origin, get_type_hints

import pytest

from stickyroute import keys
from stickyroute.keys import RefusedMeta, RouteMeta
from tests.helpers import ACCOUNTS, configured, flow, resp_body, respond


def declared(typed_dict: type) -> tuple[set[str], set[str]]:
    """(required keys, all keys); keys.py's string annotations hide NotRequired from
    __required_keys__, so read the hints."""
    hints = get_type_hints(typed_dict, include_extras=True)
    return {k for k, v in hints.items() if get_origin(v) is not NotRequired}, set(hints)


def test_every_key_is_ours_and_distinct():
    names = [v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str)]
    assert len(names) == len(set(names)) >= 5
    assert all(n == "stickyroute" or n.startswith("stickyroute.") for n in names)


@pytest.fixture
def sticky(tmp_path):
    p = tmp_path / "accounts.yaml"
    p.write_text(ACCOUNTS)
    p.chmod(0o600)
    with configured(p) as (a, _):
        yield a


def plain_json_without_secrets(metadata: dict, sticky) -> None:
    dump = json.dumps(metadata)  # raises on anything but plain data
    assert json.loads(dump) == metadata
    # ("tok", cg's key, is too short to look for: every "tokens_in" holds it)
    secrets = [s for s in sticky.state.accounts.secrets() if s != "tok"]
    assert secrets and not [s for s in secrets if s in dump]


def test_route_meta_has_its_declared_keys_and_is_plain_json(sticky):
    f = flow(body={"model": "gpt-fake", "input": "hi"}, headers=[("session-id", "s1")])
    sticky.route.request(f)
    meta = f.metadata[keys.META]
    required, known = declared(RouteMeta)
    assert required <= set(meta) <= known and "inflight" in meta
    assert f.metadata[keys.SIGNED] == [meta["account"], ["authorization"]]
    respond(f, sticky.follow, resp_body("resp_1", reasoning="rs_1"))
    assert set(meta) <= known  # what came back: declared keys only
    assert {"status", "tokens_in", "cost_micros"} <= set(meta)
    plain_json_without_secrets(f.metadata, sticky)


def test_a_refusal_leaves_refused_meta(sticky):
    f = flow(host="chatgpt.com", path="/backend-api/codex/responses", body={"input": "x"})
    sticky.route.request(f)  # the only chatgpt account is `enabled: false`
    assert f.response.status_code == 503
    assert set(f.metadata[keys.META]) == declared(RefusedMeta)[1]
    plain_json_without_secrets(f.metadata, sticky)
