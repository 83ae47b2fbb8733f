"""`sm-bot`'s own arguments: `--help` and `--version` answer and exit, never start the server."""

from __future__ import annotations

import argparse

from core.version import version

DESCRIPTION = """\
The sm server: the engine, the local API on a Unix socket (what `sm` talks to)
and, when a token is set, the Telegram bot. Settings come from SM_* variables,
then ./.env, then the YAML file named by SM_CONFIG (default
~/.config/sm/config.yaml). SIGTERM, SIGINT or `sm stop` stop it; the agents keep
running in tmux and the next start adopts them."""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sm-bot", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Check a setup with `sm doctor`; run it as a service with `sm service install`.")
    parser.add_argument("--version", action="version", version=f"sm-bot {version()}")
    return parser.parse_args(argv)
