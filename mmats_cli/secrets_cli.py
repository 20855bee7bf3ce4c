"""``mmats secrets set | list | delete``: venue credentials into the environment's encrypted store.

Values are read from standard input (or a hidden prompt on a terminal), never from the command line,
so they do not end up in the shell history or in ``ps``. One namespace per environment
(``adapters/secrets.py``): ``--environment PAPER`` (the default) can never touch LIVE credentials.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from mmats.errors import ConfigError

EPILOG = """names the live feeds use (docs/venues.md):
  oanda.token                      OANDA v20 personal access token
  alpaca.key_id, alpaca.secret_key Alpaca API key pair
examples:
  mmats secrets set oanda.token                 # prompts, hidden
  printf %s "$TOKEN" | mmats secrets set oanda.token
  mmats secrets list --environment LIVE
  mmats secrets delete alpaca.key_id"""


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from adapters.secrets import SecretStore
    from mmats.model import Environment

    return SecretStore(args.home, Environment(args.environment.upper()))


def cmd_set(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        value = getpass.getpass(f"{args.name} ({args.environment.upper()}): ")
    else:
        value = sys.stdin.read().rstrip("\r\n")
    if not value:
        raise ConfigError(f"secret {args.name}: empty value (pipe it on standard input or type it at the prompt)")
    _store(args).set(args.name, value)
    print(f"stored {args.environment.upper()} secret {args.name}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    names = _store(args).names()
    print("\n".join(names) if names else f"no {args.environment.upper()} secrets")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if not _store(args).delete(args.name):
        raise ConfigError(f"no {args.environment.upper()} secret named {args.name!r}")
    print(f"deleted {args.environment.upper()} secret {args.name}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sec = sub.add_parser("secrets", help="venue credentials, encrypted per environment",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    ssub = sec.add_subparsers(dest="secrets_cmd", metavar="ACTION", required=True)
    for name, fn, help_text in (("set", cmd_set, "store a value read from standard input"),
                                ("list", cmd_list, "the names stored (never the values)"),
                                ("delete", cmd_delete, "remove one")):
        p = ssub.add_parser(name, help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog=EPILOG)
        if name != "list":
            p.add_argument("name", help="e.g. oanda.token")
        p.add_argument("--home", default=os.environ.get("MMATS_HOME", "var"),
                       help="state folder of the system (default $MMATS_HOME or ./var)")
        p.add_argument("--environment", default="PAPER", choices=["PAPER", "LIVE", "paper", "live"])
        p.set_defaults(func=fn)
