"""What the Redis store keeps where: key names, the pin value, and the script that claims a pin.

Keys (under the prefix): `pin:<session>` = "alias|created" with TTL = idle timeout (capped by
max age), refreshed on use; `sessions:<alias>` a sorted set of session -> expiry (shared
session counts); `chain:<provider>/<client>/<id>` = JSON [session, alias] with TTL = the chain
map's; `health` a hash alias -> JSON (the account's last state change); `login:<alias>` and
`login-lock:<alias>`: an OAuth account's current tokens and its refresh lock (tokenshare.py).
Pure code: no I/O. No value holds a credential except `login:<alias>`, which exists to hand a
refreshed login to the other proxies.
"""

from __future__ import annotations

from dataclasses import dataclass

from stickyroute.core.pins import Pin

# KEYS[1] pin key. ARGV: value, idle ms, max age s, now s, sessions-key prefix, session,
# mode ("claim": keep an existing pin; "put": overwrite it). Returns {winning value, 1 if new}.
PIN_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
local idle, maxage, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function live(value)
  local alias, created = string.match(value, '^(.*)|([^|]*)$')
  local ttl = math.min(idle, math.floor((tonumber(created) + maxage - now) * 1000))
  if ttl < 1 then return nil end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', ARGV[5] .. alias, now + ttl / 1000, ARGV[6])
  return alias
end
if cur and ARGV[7] == 'claim' and live(cur) then return {cur, 0} end
if cur then
  local old = string.match(cur, '^(.*)|[^|]*$')
  redis.call('ZREM', ARGV[5] .. old, ARGV[6])
end
redis.call('SET', KEYS[1], ARGV[1])
if not live(ARGV[1]) then redis.call('DEL', KEYS[1]) end
return {ARGV[1], 1}
"""


@dataclass(frozen=True)
class Keys:
    prefix: str

    def pin(self, session: str) -> str:
        return self.prefix + "pin:" + session

    @property
    def sessions_prefix(self) -> str:
        """The script appends an alias to this."""
        return self.prefix + "sessions:"

    def sessions(self, alias: str) -> str:
        return self.sessions_prefix + alias

    def chain(self, response_id: str) -> str:
        return self.prefix + "chain:" + response_id

    @property
    def health(self) -> str:
        return self.prefix + "health"

    def login(self, alias: str) -> str:
        return self.prefix + "login:" + alias

    def login_lock(self, alias: str) -> str:
        return self.prefix + "login-lock:" + alias


def pin_value(pin: Pin) -> str:
    return f"{pin.alias}|{pin.created!r}"


def parse_pin_value(value: str) -> tuple[str, float]:
    """(alias, created) of a stored pin value."""
    alias, _, created = value.rpartition("|")
    return alias, float(created)
