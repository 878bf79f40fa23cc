"""`python -m stickyroute import ALIAS FILE`: take a CLI's login into stickyroute's token folder.

Prints the accounts-file stanza on stdout and what to do next on stderr; never a token.
"""

from __future__ import annotations

import argparse
import sys

from stickyroute.config.loginfile import DEFAULT_FOLDER, SHAPE_NAMES, import_login, stanza

NEXT_STEP = """\
Imported {shape} as {alias} into {path}.
Add the lines above to your accounts file (under `accounts:`).

Now log the CLI in again (`codex login`; `/login` in claude), so that it gets a login of its
own: refresh tokens are single-use, and two programs refreshing one login spend the same
token and log each other out. Logging the CLI out stops it too, but a logout that revokes
the login at the provider would end stickyroute's copy as well.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stickyroute")
    commands = parser.add_subparsers(dest="command", required=True)
    take = commands.add_parser(
        "import", help="copy a Codex auth.json or Claude Code .credentials.json login into "
                       "stickyroute's token folder and print its accounts-file stanza")
    take.add_argument("alias", help="the account's alias in the accounts file")
    take.add_argument("file", help="the login: ~/.codex/auth.json or ~/.claude/.credentials.json")
    take.add_argument("--dir", default=DEFAULT_FOLDER,
                      help=f"token folder (default {DEFAULT_FOLDER}; created with mode 0700)")
    take.add_argument("--replace", action="store_true",
                      help="overwrite a login already imported under this alias")
    args = parser.parse_args(argv)
    try:
        imported = import_login(args.alias, args.file, args.dir, replace=args.replace)
    except ValueError as e:
        print(f"stickyroute import: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(stanza(imported))
    sys.stdout.flush()
    print("\n" + NEXT_STEP.format(shape=SHAPE_NAMES[imported.shape], alias=imported.alias,
                                  path=imported.path), file=sys.stderr, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
