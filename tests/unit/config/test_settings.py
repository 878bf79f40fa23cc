"""config/settings.py: the address and store options parsed on their own."""

import pytest

from stickyroute.config.settings import parse_address, parse_store


@pytest.mark.parametrize("spec,want", [
    ("127.0.0.1:8091", ("127.0.0.1", 8091)), ("", None), ("  ", None),
    ("localhost:0", ("localhost", 0)), ("[::1]:9000", ("::1", 9000)),
])
def test_parse_address(spec, want):
    assert parse_address(spec) == want


@pytest.mark.parametrize("spec", ["8091", ":8091", "host:", "host:x", "host:70000", "a b:1"])
def test_parse_address_rejects(spec):
    with pytest.raises(ValueError):
        parse_address(spec)


@pytest.mark.parametrize("spec, kind, target", [
    ("memory", "memory", ""),
    ("", "file", "/conf/stickyroute-state.json"),
    ("/var/lib/sticky.json", "file", "/var/lib/sticky.json"),
    ("redis://127.0.0.1:6379/0", "redis", "redis://127.0.0.1:6379/0"),
])
def test_store_target(spec, kind, target):
    store = parse_store(spec)
    assert store.kind == kind
    assert (store.path_in("/conf") if kind == "file" else store.target) == target
