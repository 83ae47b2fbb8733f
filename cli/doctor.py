"""`sm doctor`: is this machine ready to run sm? One line per check, a fix for each ✗.

Each check looks at the real thing (runs `tmux -V`, calls the server's
/health, asks the Bot API) and returns a `Check`. The command prints them in
order and exits 1 if any failed. It reads the full settings, as sm-bot does,
so it pays pydantic's import cost; it is not on any hot path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

OK, FAIL, SKIP = "✓", "✗", "-"
MIN_TMUX = (3, 2)
MIN_NODE = 18
MIN_FREE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Check:
    mark: str  # OK, FAIL or SKIP (not applicable; never fails the run)
    text: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.mark} {self.text}" + (f"\n    fix: {self.fix}" if self.fix else "")


def _run(argv: list[str], timeout: float = 10) -> str | None:
    """A command's first line of output, or None when it cannot run."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if out.returncode == 0 and text else None


def _numbers(text: str) -> tuple[int, ...]:
    found = re.search(r"(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else ()


# -- machine ------------------------------------------------------------------------


def check_tmux() -> Check:
    path = shutil.which("tmux")
    fix = "install tmux ≥ 3.2 (apt install tmux, brew install tmux)"
    if not path:
        return Check(FAIL, "tmux: not found on PATH", fix)
    version = _run([path, "-V"]) or ""
    if _numbers(version) < MIN_TMUX:
        return Check(FAIL, f"tmux: {version or 'unknown version'} at {path}; sm needs ≥ 3.2", fix)
    return Check(OK, f"{version} ({path})")


def _agent_binary(command: str) -> tuple[str, str | None]:
    """(the program a provider's command line runs, its absolute path or None)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return command, None
    if argv and argv[0] == "env":  # env VAR=x prog ...
        argv = [a for a in argv[1:] if "=" not in a] or argv
    return (argv[0], shutil.which(argv[0])) if argv else (command, None)


def _is_node_script(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"node" in first


def check_agent(provider: str, command: str, required: bool) -> Check:
    program, path = _agent_binary(command)
    setting = f"SM_{provider.upper()}_COMMAND"
    if path is None:
        if not required:
            return Check(SKIP, f"{provider}: `{program}` not installed (optional; set {setting} to use it)")
        return Check(FAIL, f"{provider}: `{program}` not found on PATH",
                     f"install it, or set {setting} (providers.{provider}.command) to its absolute path")
    single = shlex.split(command) == [program]
    version = _run([path, "--version"]) if single else None
    return Check(OK, f"{provider}: {path}" + (f" ({version})" if version else ""))


def check_node(claude_command: str) -> Check:
    _, path = _agent_binary(claude_command)
    needs_node = path is not None and _is_node_script(os.path.realpath(path))
    node = shutil.which("node")
    version = _run([node, "--version"]) if node else None
    if version and (_numbers(version) or (0,))[0] >= MIN_NODE:
        return Check(OK, f"Node {version} (for Claude Code)")
    if path is None:
        return Check(SKIP, "Node: not checked (claude was not found)")
    if not needs_node:
        return Check(SKIP, "Node: not needed (claude is not a Node script here)")
    have = f"Node {version}" if version else "Node not found"
    return Check(FAIL, f"{have}; Claude Code at {path} needs Node ≥ {MIN_NODE}",
                 "install Node.js ≥ 18 (https://nodejs.org), or Claude Code's native build")


def check_state_dir(state_dir: Path) -> list[Check]:
    checks = []
    if not state_dir.exists():
        checks.append(Check(OK, f"state dir {state_dir}: not made yet (sm-bot makes it, 0700)"))
    else:
        info = state_dir.stat()
        loose = [p.name for p in (state_dir, state_dir / "owner.token", state_dir / "sm.db")
                 if p.exists() and stat.S_IMODE(p.stat().st_mode) & 0o077]
        if info.st_uid != os.getuid():
            checks.append(Check(FAIL, f"state dir {state_dir} belongs to uid {info.st_uid}, not you",
                                f"chown -R {os.getuid()} {shlex.quote(str(state_dir))}"))
        elif loose:
            checks.append(Check(FAIL, f"state dir {state_dir}: other users can read {', '.join(loose)}",
                                f"chmod -R go-rwx {shlex.quote(str(state_dir))}"))
        elif not os.access(state_dir, os.W_OK | os.X_OK):
            checks.append(Check(FAIL, f"state dir {state_dir} is not writable",
                                f"chmod u+rwx {shlex.quote(str(state_dir))}"))
        else:
            checks.append(Check(OK, f"state dir {state_dir} (private to you)"))
    existing = state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    text = f"{free / 2**30:.1f} GiB free on the state dir's disk"
    if free < MIN_FREE_BYTES:
        checks.append(Check(FAIL, text, "free some disk space, or set paths.state_dir (SM_STATE_DIR) elsewhere"))
    else:
        checks.append(Check(OK, text))
    return checks


def check_hooks_template() -> Check:
    from core.engine import HOOK_EVENTS
    from hooks import cli_command
    from hooks.install import sm_hooks

    sm = cli_command()
    fix = "reinstall sm (pip install --force-reinstall, pipx reinstall sm)"
    try:
        hooks = sm_hooks(shlex.quote(sm))
    except (OSError, ValueError, KeyError) as exc:
        return Check(FAIL, f"hooks template: unreadable ({exc})", fix)
    problems = []
    for event, entries in hooks.items():
        if event not in HOOK_EVENTS:
            problems.append(f"unknown event {event}")
        for entry in entries:
            for hook in entry.get("hooks", []):
                command, timeout = hook.get("command", ""), hook.get("timeout")
                if hook.get("type") != "command" or not command.startswith(shlex.quote(sm)):
                    problems.append(f"{event}: a hook that is not an sm command")
                if not isinstance(timeout, (int, float)) or timeout <= 0:
                    problems.append(f"{event}: no timeout")
    program = shlex.split(sm)[0]
    if not (os.path.isfile(program) and os.access(program, os.X_OK)):
        problems.append(f"{program} is not executable")
    if problems:
        return Check(FAIL, "hooks template: " + "; ".join(problems), fix)
    return Check(OK, f"hooks template: {len(hooks)} events, each runs {sm}")


# -- the server ----------------------------------------------------------------------


def check_server(cli_version: str) -> Check:
    from cli.client import ApiError, Client, ServerDown

    client = Client(timeout=5)
    try:
        health = client.request("GET", "/health")
    except ServerDown:
        return Check(FAIL, f"server: not running (socket {client.socket_path})",
                     "start it: sm-bot, or sm service install")
    except (ApiError, OSError) as exc:
        return Check(FAIL, f"server at {client.socket_path}: {exc}",
                     "read its log (sm logs), then restart it (sm stop; sm-bot)")
    theirs = health.get("version") if isinstance(health, dict) else None
    if theirs != cli_version:
        return Check(FAIL, f"server {theirs or '(version unknown)'} differs from this sm {cli_version}",
                     "restart it on the new code: sm stop, then sm-bot (or sm service install again)")
    return Check(OK, f"server {theirs} running, {health.get('sessions', 0)} live session(s) "
                     f"({client.socket_path})")


# -- Telegram ------------------------------------------------------------------------


class BotApi:
    """Just enough of the Bot API for a check: JSON in, `result` or an error out."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = f"{base_url.rstrip('/')}/bot{token}"

    def call(self, method: str, **params: Any) -> Any:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(f"{self.base}/{method}", data=json.dumps(params).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return json.loads(response.read())["result"]
        except urllib.error.HTTPError as exc:
            try:
                description = json.loads(exc.read()).get("description") or exc.reason
            except ValueError:
                description = exc.reason
            raise BotApiError(exc.code, str(description)) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BotApiError(0, f"cannot reach {self.base.split('/bot')[0]}: {reason}") from None


class BotApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status


def check_telegram(token: str, api_url: str, chat_id: int | None,
                   allowed_users: list[int], allowed_chats: list[int]) -> list[Check]:
    if not token:
        return [Check(SKIP, "Telegram: no token, sm-bot runs headless (set telegram.token, SM_TELEGRAM_TOKEN)")]
    api = BotApi(api_url, token)
    checks = []
    try:
        me = api.call("getMe")
    except BotApiError as exc:
        fix = ("get a new token from @BotFather (/token) and set SM_TELEGRAM_TOKEN" if exc.status in (401, 404)
               else "check the network, or telegram.api_url (SM_TELEGRAM_API_URL)")
        return [Check(FAIL, f"Telegram token: {exc}", fix)]
    checks.append(Check(OK, f"Telegram token: the bot @{me.get('username')} ({me.get('first_name')})"))
    checks.append(_check_chat(api, me, chat_id))
    if not allowed_users and not allowed_chats:
        checks.append(Check(FAIL, "allow-lists: telegram.allowed_user_ids and telegram.allowed_chat_ids "
                                  "are both empty, so the bot obeys nobody",
                            "set SM_TELEGRAM_ALLOWED_USER_IDS to your Telegram user id"))
    else:
        named = [f"{len(ids)} in {name}" for name, ids in
                 (("allowed_user_ids", allowed_users), ("allowed_chat_ids", allowed_chats)) if ids]
        checks.append(Check(OK, "allow-lists: " + ", ".join(named)))
    return checks


def _check_chat(api: BotApi, me: dict[str, Any], chat_id: int | None) -> Check:
    if not chat_id:
        return Check(FAIL, "Telegram chat: telegram.chat_id is not set",
                     "add the bot to a forum group, then set SM_TELEGRAM_CHAT_ID to the group's id")
    try:
        chat = api.call("getChat", chat_id=chat_id)
        member = api.call("getChatMember", chat_id=chat_id, user_id=me["id"])
    except BotApiError as exc:
        return Check(FAIL, f"Telegram chat {chat_id}: {exc}",
                     "add the bot to the group (or fix telegram.chat_id, SM_TELEGRAM_CHAT_ID)")
    title = chat.get("title") or chat.get("first_name") or chat_id
    if chat.get("type") == "private":
        if me.get("has_topics_enabled"):
            return Check(OK, f"Telegram chat: the private chat with {title}, with topics")
        return Check(FAIL, f"Telegram chat: the private chat with {title} has no topics",
                     "turn on topics for the bot in @BotFather (Bot Settings), or use a forum group")
    if not chat.get("is_forum"):
        return Check(FAIL, f"Telegram chat {title!r}: topics are off",
                     "turn on Topics in the group's settings")
    status = member.get("status")
    if status == "creator" or (status == "administrator" and member.get("can_manage_topics")):
        return Check(OK, f"Telegram chat {title!r}: the bot is an admin that can manage topics")
    why = "an admin without the right to manage topics" if status == "administrator" else f"not an admin ({status})"
    return Check(FAIL, f"Telegram chat {title!r}: the bot is {why}",
                 "make the bot an admin of the group with Manage topics")


# -- the command ------------------------------------------------------------------------


def _telegram_settings() -> dict[str, Any]:
    from bot.telegram.settings import load_telegram_settings

    telegram = load_telegram_settings()
    return {"token": telegram.token, "api_url": telegram.api_url, "chat_id": telegram.chat_id,
            "allowed_users": list(telegram.allowed_user_ids), "allowed_chats": list(telegram.allowed_chat_ids),
            "default_provider": telegram.default_provider}


def run_checks() -> list[Check]:
    from pydantic import ValidationError

    from core.config import load_settings
    from core.engine import PROVIDER_NAMES
    from core.version import version

    checks = [check_tmux()]
    try:
        settings = load_settings()
        telegram = _telegram_settings()
    except (ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        return checks + [Check(FAIL, f"configuration: {first}", "run sm-bot to see the setting named")]
    default = telegram["default_provider"]
    for provider in PROVIDER_NAMES:
        if provider == "shell":
            continue
        command = settings.command_for(provider)
        explicit = bool(os.environ.get(f"SM_{provider.upper()}_COMMAND")) or command != provider
        checks.append(check_agent(provider, command, required=provider in ("claude", default) or explicit))
    checks.append(check_node(settings.command_for("claude")))
    checks.append(check_server(version()))
    checks += check_telegram(telegram["token"], telegram["api_url"], telegram["chat_id"],
                             telegram["allowed_users"], telegram["allowed_chats"])
    checks.append(check_hooks_template())
    checks += check_state_dir(settings.state_dir)
    return checks


@click.command()
def doctor() -> None:
    """Check tmux, the agent CLIs, the server, the Telegram bot and the state dir; exit 1 on any ✗."""
    checks = run_checks()
    for check in checks:
        click.echo(check.line())
    failed = sum(c.mark == FAIL for c in checks)
    if failed:
        click.echo(f"\n{failed} problem(s) found.")
        raise SystemExit(1)
    click.echo("\nall good.")
