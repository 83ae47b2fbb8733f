"""`sm-bot` (or `python -m bot`): the main process; `sm-node`: the same without Telegram.

It builds the engine, serves the local API, and runs the Telegram bot when a
token is configured. Without a token it runs headless: the API and the `sm`
CLI work, and it says so. `sm-node` never starts Telegram, token or not: on
several hosts (README "Several hosts") exactly one host runs `sm-bot`, since a
bot token can be polled by one process only, and every other host a node. SIGINT/SIGTERM stop it cleanly; the agents keep
running in tmux and are adopted on the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

from pydantic import ValidationError

import hooks
from bot.api.server import ApiServer
from bot.logs import RedactSecrets, setup_logging
from bot.command_line import parse as parse_args
from bot.telegram.settings import TelegramSettings, load_telegram_settings
from core import environment, paths
from core.config import Settings, config_path, load_settings, unused_yaml_keys
from core.engine import Engine
from core.store import StoreError
from core.version import version

log = logging.getLogger("sm")


def _already_running(settings: Settings) -> bool:
    path = settings.socket_path
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


HEADLESS_BANNER = """\
sm is running headless: no Telegram token is set (SM_TELEGRAM_TOKEN).
  API:        {socket}
  state dir:  {state_dir}
  try:        sm spawn "hello" --provider shell   then   sm status
"""


NODE_BANNER = """\
sm-node {node} is running (no Telegram here: the host running sm-bot shows this node's sessions).
  API:        {socket}
  state dir:  {state_dir}
  NATS:       {nats}
"""


async def run(settings: Settings, redactor: RedactSecrets | None = None,
              telegram_settings: TelegramSettings | None = None, role: str = "sm-bot") -> int:
    if _already_running(settings):
        print(f"{role} is already running (socket {settings.socket_path})", file=sys.stderr)
        return 1
    sm = hooks.cli_command()
    engine = await Engine.open(settings, sm_command=sm, hook_settings=hooks.settings_for(sm),
                               allowed_roots=telegram_settings.allowed_roots if telegram_settings else None)
    api = ApiServer(engine)
    telegram = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await engine.start()
        if redactor is not None:
            redactor.secrets.append(engine.owner_token)
        await api.start()
        _record_where_it_listens(settings)
        if role == "sm-node":
            print(NODE_BANNER.format(node=settings.node, socket=settings.socket_path, state_dir=settings.state_dir,
                                     nats=settings.nats_url or "not set (SM_NATS_URL): this node is alone"),
                  file=sys.stderr, flush=True)
        elif telegram_settings and telegram_settings.token:
            from bot.telegram.frontend import TelegramFrontEnd

            # Telegram unreachable or refusing the token: the engine and the API run
            # regardless, and the bot keeps trying (bot/telegram/frontend.py `_poll`).
            telegram = TelegramFrontEnd(engine, telegram_settings)
            await telegram.start()
        else:
            print(HEADLESS_BANNER.format(socket=settings.socket_path, state_dir=settings.state_dir),
                  file=sys.stderr, flush=True)
        log.info("%s ready (%d live session(s))", role, engine.live_count())
        # A signal, or the owner's `sm stop` (POST /shutdown): the same clean stop.
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(engine.shutdown_requested())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for pending in waits:
            pending.cancel()
        log.info("shutting down; agents keep running in tmux (socket %s)", settings.tmux_socket)
    finally:
        if telegram is not None:
            await telegram.stop()
        await api.stop()
        await engine.stop()
    return 0


def _record_where_it_listens(settings: Settings) -> None:
    """For CLIs without this process's environment (the socket may come from YAML)."""
    if os.environ.get("SM_STATE_DIR") or os.environ.get("SM_SOCKET"):
        return  # named by the environment, which the CLI shares; nothing to tell it
    try:
        paths.record_server(str(settings.state_dir), str(settings.socket_path), version())
    except OSError as exc:
        log.warning("could not record the socket's path in %s: %s", paths.server_record_path(), exc)


def _token_problem(token: str) -> str | None:
    from aiogram.utils.token import TokenValidationError, validate_token

    try:
        validate_token(token)
    except TokenValidationError:
        return ("telegram.token (SM_TELEGRAM_TOKEN) is not a bot token (a placeholder?); "
                "get one from @BotFather: it looks like 123456789:AAH...")
    return None


def _describe(exc: ValidationError) -> str:
    """pydantic's report on one line, each problem named as the user sets it."""
    problems = []
    for err in exc.errors():
        name = ".".join(str(part) for part in err["loc"])
        problems.append(f"{name} (SM_{name.upper()}): {err['msg']} (got {err.get('input')!r})")
    return "; ".join(problems)


def node_main() -> None:
    """`sm-node`: the engine and its local API, never Telegram (even with a token set)."""
    main(role="sm-node")


def main(role: str = "sm-bot") -> None:
    parse_args(sys.argv[1:])
    try:
        settings = load_settings()
        telegram_settings = load_telegram_settings()
    except ValidationError as exc:
        print(f"{role}: bad configuration: {_describe(exc)}", file=sys.stderr)
        sys.exit(1)
    except ValueError as exc:
        print(f"{role}: bad configuration: {exc}", file=sys.stderr)
        sys.exit(1)
    if role == "sm-node":
        telegram_settings = telegram_settings.model_copy(update={"token": ""})
    problem = _token_problem(telegram_settings.token) if telegram_settings.token else None
    if problem:
        print(f"{role}: bad configuration: {problem}", file=sys.stderr)
        sys.exit(1)
    # The settings hold what they need: sm's secrets leave the environment now, so
    # the tmux server (and every agent in it) never inherits them.
    environment.scrub(os.environ, settings.env_deny)
    try:
        paths.secure_tree(str(settings.state_dir))
    except OSError as exc:
        print(f"sm-bot: the state dir {settings.state_dir} must be private (0700) and cannot be made so: {exc}",
              file=sys.stderr)
        sys.exit(1)
    try:
        redactor = setup_logging(settings.log_level, settings.state_dir, [telegram_settings.token])
        for key in unused_yaml_keys(TelegramSettings):
            log.warning("config file %s: %s is not a setting sm uses; it is ignored", config_path(), key)
        sys.exit(asyncio.run(run(settings, redactor, telegram_settings, role)))
    except StoreError as exc:
        print(f"sm-bot: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        # A port in use, a state dir that cannot be made: one line, as the CLI does.
        log.debug("sm-bot could not start", exc_info=True)
        print(f"sm-bot: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
