"""`sm setup`: from nothing to a working bot, in a few questions.

1. The token, checked with getMe.
2. The person adds the bot to a forum group as an admin with Manage topics and
   writes any message there; that update (getUpdates) gives the chat's id and
   the person's user id. Only one reader may call getUpdates at a time, so an
   sm-bot that is running (and polls the same bot) is stopped first.
3. The bot's rights in the chat (getChat, getChatMember), as `sm doctor` checks them.
4. The config file, 0600: the `telegram:` section of `SM_CONFIG` or
   ~/.config/sm/config.yaml (the rest of an existing file is kept).
5. The service, if wanted (`sm service install`).

Every question has a flag, so a script can run it with no terminal: `--token`,
`--chat-id`/`--user-id` (skip waiting for a message), `--service/--no-service`,
`--stop-server`; with `--no-input`, a missing answer is an error naming its flag.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from cli.common import fail
from cli.doctor import FAIL, BotApi, BotApiError, _check_chat

DEFAULT_API = "https://api.telegram.org"
GROUP_TYPES = ("group", "supergroup")


def config_file(explicit: str | None) -> Path:
    """Where settings are read from (core/config.py): --config, SM_CONFIG, else ~/.config/sm/config.yaml."""
    return Path(explicit or os.environ.get("SM_CONFIG") or "~/.config/sm/config.yaml").expanduser()


def write_config(path: Path, telegram: dict[str, Any]) -> None:
    """Merge `telegram` into the file's `telegram:` section and write it back, 0600, atomically."""
    import yaml

    doc: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            fail(f"cannot read {path} to update it: {exc}; fix or move it, then run sm setup again")
        if isinstance(loaded, dict):
            doc = loaded
    section = doc.get("telegram") if isinstance(doc.get("telegram"), dict) else {}
    users = set(section.get("allowed_user_ids") or []) if isinstance(section.get("allowed_user_ids"), list) else set()
    section.update(telegram)
    section["allowed_user_ids"] = sorted(users | set(telegram["allowed_user_ids"]))
    doc["telegram"] = section
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# sm's configuration (written by sm setup; see .env.example for every setting)\n")
        yaml.safe_dump(doc, fh, sort_keys=False, allow_unicode=True)
    os.replace(tmp, path)
    os.chmod(path, 0o600)


class Setup:
    def __init__(self, api_url: str, interactive: bool) -> None:
        self.api_url = api_url
        self.interactive = interactive

    def ask(self, text: str, flag: str, **kwargs: Any) -> Any:
        if not self.interactive:
            fail(f"{text.rstrip(':?')}: give {flag} (there is no terminal to ask on)")
        return click.prompt(text, **kwargs)

    # -- 1. the token -----------------------------------------------------------------

    def bot(self, token: str | None) -> tuple[BotApi, dict[str, Any]]:
        while True:
            if not token:
                click.echo("Create a bot with @BotFather in Telegram (/newbot), and paste its token.")
                token = str(self.ask("Bot token", "--token", hide_input=sys.stdin.isatty())).strip()
            api = BotApi(self.api_url, token)
            try:
                me = api.call("getMe")
            except BotApiError as exc:
                why = ("Telegram refused the token" if exc.status in (401, 404)
                       else "could not ask Telegram about the token")
                if not self.interactive or exc.status not in (401, 404):
                    fail(f"{why}: {exc}")
                click.echo(f"✗ {why} ({exc}); try again.")
                token = None
                continue
            click.echo(f"✓ the bot @{me.get('username')} ({me.get('first_name')})")
            return api, {"token": token, **me}

    # -- 2. the chat and the person ------------------------------------------------------

    def stop_server(self, allowed: bool) -> None:
        """getUpdates has one reader: an sm-bot polling the same bot would take the message."""
        from cli.client import Client, ServerDown

        client = Client(timeout=5)
        try:
            client.request("GET", "/health")
        except ServerDown:
            return
        except Exception:
            pass
        notice = ("sm-bot is running, and it reads the bot's messages too (Telegram lets one reader "
                  "at a time ask for them)")
        if not allowed:
            if not self.interactive:
                fail(f"{notice}: stop it first (sm stop), or give --stop-server, "
                     "or --chat-id and --user-id")
            if not click.confirm(f"{notice}. Stop it now? (the agents keep running)", default=True):
                fail("stop sm-bot (sm stop), then run sm setup again")
        out = client.request("POST", "/shutdown")
        from cli.server import wait_until_down

        wait_until_down(client)
        click.echo(f"stopped sm-bot (pid {out.get('pid')}); the agents keep running in tmux")

    def find_chat(self, api: BotApi, me: dict[str, Any], wait: float) -> tuple[int, int, str]:
        """The (chat id, user id, chat title) of the first group message from a person."""
        click.echo(f"\nNow, in Telegram:\n"
                   f"  1. make a group, and turn on Topics in its settings;\n"
                   f"  2. add @{me.get('username')} to it, as an admin with the right to Manage topics;\n"
                   f"  3. send any message in the group.\n"
                   f"Waiting for that message (up to {wait:g} s)...")
        try:
            api.call("deleteWebhook")  # getUpdates is refused while a webhook is set
        except BotApiError:
            pass
        deadline = time.monotonic() + wait
        offset = 0
        while time.monotonic() < deadline:
            timeout = int(max(1, min(10, deadline - time.monotonic())))
            try:
                updates = api.call("getUpdates", offset=offset, timeout=timeout)
            except BotApiError as exc:
                if exc.status == 409:
                    fail("another program is reading this bot's messages (an sm-bot elsewhere?): "
                         "stop it, then run sm setup again")
                fail(f"could not read the bot's messages: {exc}")
            for update in updates:
                offset = update["update_id"] + 1
                found = self._chat_of(update, me)
                if found:
                    api.call("getUpdates", offset=offset, timeout=0)  # confirm: sm-bot won't see it again
                    return found
        fail(f"no message reached the bot in {wait:g} s: is it in the group, and an admin "
             "(a bot that is not sees only commands)? Or give --chat-id and --user-id")

    @staticmethod
    def _chat_of(update: dict[str, Any], me: dict[str, Any]) -> tuple[int, int, str] | None:
        message = update.get("message") or update.get("edited_message")
        if message:
            chat, person = message.get("chat") or {}, message.get("from") or {}
        elif update.get("my_chat_member"):  # the bot was added: by whom, to what
            chat, person = update["my_chat_member"]["chat"], update["my_chat_member"].get("from") or {}
        else:
            return None
        if person.get("is_bot") or not person.get("id"):
            return None
        if chat.get("type") not in GROUP_TYPES:
            click.echo(f"  (a message in a {chat.get('type')} chat, not a group: send it in the group)")
            return None
        return int(chat["id"]), int(person["id"]), str(chat.get("title") or chat["id"])

    # -- 3. the bot's rights -------------------------------------------------------------

    def check_rights(self, api: BotApi, me: dict[str, Any], chat_id: int) -> None:
        while True:
            check = _check_chat(api, me, chat_id)
            click.echo(check.line())
            if check.mark != FAIL:
                return
            if not self.interactive:
                fail(f"the bot cannot work in chat {chat_id} yet: {check.fix}, then run sm setup again")
            click.prompt("Fix it in Telegram, then press Enter to check again", default="",
                         show_default=False, prompt_suffix=" ")


@click.command()
@click.option("--token", help="The bot's token from @BotFather (else asked).")
@click.option("--chat-id", type=int, help="The forum group's id (else read from a message sent there).")
@click.option("--user-id", type=int, help="Your Telegram user id (else read from that message).")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="The config file to write (default: SM_CONFIG, else ~/.config/sm/config.yaml).")
@click.option("--api-url", default=DEFAULT_API, show_default=True, help="The Bot API server.")
@click.option("--wait", "wait_seconds", type=float, default=300, show_default=True,
              help="How long to wait for your message in the group.")
@click.option("--stop-server", is_flag=True, help="Stop a running sm-bot without asking (it would take the message).")
@click.option("--service/--no-service", default=None, help="Install the user service at the end (else asked).")
@click.option("--no-input", is_flag=True, help="Ask nothing: a missing answer is an error naming its flag.")
def setup(token: str | None, chat_id: int | None, user_id: int | None, config: str | None, api_url: str,
          wait_seconds: float, stop_server: bool, service: bool | None, no_input: bool) -> None:
    """Set up the Telegram bot: token, forum group, your user id, the config file and the service.

    Each question has a flag; questions are read from standard input, so a
    script can answer them there too, or give every flag and --no-input.
    """
    run = Setup(api_url, interactive=not no_input)
    api, me = run.bot(token)
    if chat_id is None or user_id is None:
        run.stop_server(stop_server)
        found_chat, found_user, title = run.find_chat(api, me, wait_seconds)
        click.echo(f"✓ the group {title!r} ({found_chat}), and you, user {found_user}")
        chat_id = chat_id if chat_id is not None else found_chat
        user_id = user_id if user_id is not None else found_user
    run.check_rights(api, me, chat_id)
    path = config_file(config)
    telegram: dict[str, Any] = {"token": me["token"], "chat_id": chat_id, "allowed_user_ids": [user_id]}
    if api_url != DEFAULT_API:
        telegram["api_url"] = api_url
    write_config(path, telegram)
    click.echo(f"✓ wrote {path} (0600)")
    overridden = [n for n in ("SM_TELEGRAM_TOKEN", "SM_TELEGRAM_CHAT_ID", "SM_TELEGRAM_ALLOWED_USER_IDS")
                  if os.environ.get(n)]
    if overridden:
        click.echo(f"  note: {', '.join(overridden)} in your environment override(s) the file")
    default = Path("~/.config/sm/config.yaml").expanduser()
    if path.resolve() != default.resolve() and os.environ.get("SM_CONFIG") != str(path):
        os.environ["SM_CONFIG"] = str(path.resolve())  # so the service reads this file too
        click.echo(f"  sm-bot reads it with SM_CONFIG={path.resolve()}")
    if service is None:
        service = run.interactive and click.confirm("Run sm-bot as a service (starts now and at login)?",
                                                    default=True)
    if service:
        from cli.service import install

        click.get_current_context().invoke(install, print_only=False)
    else:
        click.echo("Start it: sm-bot   (or later: sm service install)")
    click.echo("Then check everything: sm doctor")
