"""python -m fakeapi --port 9000 --key sk-test-a=acct-a --chatgpt tok-c=acct-c:acct-id-c"""

from __future__ import annotations

import argparse
import logging
import threading

from .upstream import FakeUpstream


def _pair(spec: str) -> tuple[str, str]:
    key, sep, value = spec.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {spec!r}")
    return key, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakeapi", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--key", type=_pair, action="append", default=[],
                        metavar="CREDENTIAL=ACCOUNT")
    parser.add_argument("--chatgpt", type=_pair, action="append", default=[],
                        metavar="TOKEN=ACCOUNT:CHATGPT_ACCOUNT_ID")
    parser.add_argument("--cache-ttl", type=float, default=300.0)
    parser.add_argument("--access-ttl", type=float, default=3600.0,
                        help="seconds an OAuth access token lives")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)

    chatgpt = {tok: tuple(v.split(":", 1)) for tok, v in args.chatgpt}
    if any(len(v) != 2 for v in chatgpt.values()):
        parser.error("--chatgpt takes TOKEN=ACCOUNT:CHATGPT_ACCOUNT_ID")
    fake = FakeUpstream(dict(args.key), chatgpt, cache_ttl=args.cache_ttl,  # type: ignore[arg-type]
                        access_ttl=args.access_ttl,
                        host=args.host, port=args.port)
    fake.start()
    print(f"fakeapi listening at {fake.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
