"""The `sm` commands.

Plain text by default, `--json` for machines. Exit codes (the README lists
them too): 0 ok; 1 refused or failed (one line on stderr), or `sm alone`
found others, or `sm doctor` found a problem; 2 the server is not running;
3 `sm service status`: installed but not running; 64 a usage error (EX_USAGE:
an unknown command or option, a missing argument).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from cli import common
from cli.client import segment
from cli.common import call, emit_json, fail, table
from cli.completion import SESSION
from core.types import PROVIDER_NAMES

EX_USAGE = 64


def echo(text: str) -> None:
    click.echo(text)


def read_text(text: str) -> str:
    if text == "-":
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            fail("standard input is not UTF-8 text")
    return text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sm", prog_name="sm")
def cli() -> None:
    """sm: manage a swarm of coding agents in tmux.

    Inside an agent sm started, commands act as that agent (SM_TOKEN); in a
    terminal, as the owner. Sessions are named by id or name everywhere.
    """


@cli.command()
@click.argument("prompt", default="")
@click.option("--name", "-n", help="Friendly name (letters, digits, . _ -).")
@click.option("--provider", "-p", default="claude", show_default=True,
              type=click.Choice(PROVIDER_NAMES))
@click.option("--dir", "-d", "workdir", type=click.Path(file_okay=False), help="Working directory (default: yours).")
@click.option("--wait", "wait_seconds", type=float, help="Wake me when it finishes its first task, or after this many seconds.")
@click.option("--worktree", "worktree", is_flag=False, flag_value="", default=None, metavar="[BRANCH]",
              help="Start it in a new git worktree on BRANCH (default sm/NAME), off the repository's HEAD.")
@click.option("--host", help="Several hosts: start it on this node (--dir is then a path there).")
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
def spawn(prompt: str, name: str | None, provider: str, workdir: str | None,
          wait_seconds: float | None, worktree: str | None, host: str | None, as_json: bool) -> None:
    """Start a child agent with PROMPT as its first input (empty: no input).

    With --worktree it works in a git worktree of its own (removed when it ends,
    if clean and merged); put PROMPT before --worktree, or use --worktree=BRANCH.
    """
    body: dict[str, Any] = {"prompt": read_text(prompt), "provider": provider}
    if host:
        # A path on that node, not here: sent as given (absolute), or none for its default.
        body["host"] = host
        if workdir:
            if not os.path.isabs(workdir):
                fail("with --host, give --dir as an absolute path on that node")
            body["dir"] = workdir
    else:
        body["dir"] = os.path.abspath(workdir or os.getcwd())
    if worktree is not None:
        body["worktree"] = worktree
    if name:
        body["name"] = name
    if wait_seconds:
        body["wait"] = wait_seconds
    session = call("POST", "/sessions", body)
    if session["state"] == "errored":
        fail(f"{session['name']} ({session['id']}) {session['state_reason']}")
    if as_json:
        emit_json(session)
    else:
        where = session["workdir"] + (f" (worktree, branch {session['branch']})" if session.get("worktree") else "")
        on = f" on {session['node']}" if session.get("node") else ""
        click.echo(f"spawned {session['name']} ({session['id']}){on} in {where}")


@cli.command()
@click.argument("session", type=SESSION)
@click.argument("text")
@click.option("--important", is_flag=True, help="Ahead of queued messages, at the next idle.")
@click.option("--urgent", is_flag=True, help="Interrupt the agent and deliver now.")
def send(session: str, text: str, important: bool, urgent: bool) -> None:
    """Queue TEXT for SESSION ('-' reads it from stdin). Returns once it is stored."""
    if important and urgent:
        fail("choose --important or --urgent, not both")
    mode = "urgent" if urgent else "important" if important else "sequential"
    out = call("POST", f"/sessions/{segment(session)}/input", {"text": read_text(text), "mode": mode})
    click.echo(f"queued message {out['message']} for {session} ({mode})")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--to", help="'owner', or an ancestor's id or name (default: your own topic).")
@click.option("--caption", "-c", default="", help="Text shown under the files.")
def share(paths: tuple[str, ...], to: str | None, caption: str) -> None:
    """Send files to the phone: images as photos, the rest as documents, several as albums."""
    body: dict[str, Any] = {"paths": [os.path.abspath(p) for p in paths], "caption": caption}
    if to:
        body["to"] = to
    out = call("POST", "/share", body)
    where = "the owner" if out["to"] == "owner" else out["to"]
    click.echo(f"shared {out['files']} file(s) with {where}")


@cli.command()
@click.argument("session", type=SESSION)
@click.argument("seconds", type=float)
def wait(session: str, seconds: float) -> None:
    """Return now; wake me with a message when SESSION is idle, or after SECONDS."""
    call("POST", f"/sessions/{segment(session)}/watch", {"seconds": seconds})
    click.echo(f"will wake you when {session} is idle (or in {seconds:g}s)")


@cli.command()
@click.argument("session", type=SESSION)
@click.argument("prompt", default="")
def clear(session: str, prompt: str) -> None:
    """Clear SESSION's context, then send PROMPT if given."""
    call("POST", f"/sessions/{segment(session)}/clear", {"prompt": read_text(prompt)})
    click.echo(f"clearing {session}")


@cli.command()
@click.argument("session", type=SESSION)
def kill(session: str) -> None:
    """Kill SESSION (yourself or a descendant; the owner may kill any)."""
    out = call("DELETE", f"/sessions/{segment(session)}")
    click.echo(f"killed {out['name']} ({out['id']})")


@cli.command()
@click.argument("session", type=SESSION, required=False)
@click.option("--all", "every", is_flag=True, help="Every lost session you may manage.")
def resume(session: str | None, every: bool) -> None:
    """Run a lost SESSION again (its tmux gone, e.g. after a reboot).

    Same id, name, directory, parent and topic; a Claude agent continues its
    conversation (claude --resume), other agents start afresh. Its queued
    messages are delivered once it is ready.
    """
    if every == bool(session):
        fail("usage: sm resume SESSION, or sm resume --all")
    if session:
        out = call("POST", f"/sessions/{segment(session)}/resume")
        click.echo(f"resuming {out['name']} ({out['id']})")
        return
    outcomes = call("POST", "/resume")
    if not outcomes:
        click.echo("no lost sessions")
    for o in outcomes:
        click.echo(f"resuming {o['name']} ({o['id']})" if o["resumed"]
                   else f"could not resume {o['name']} ({o['id']}): {o['error']}")
    if any(not o["resumed"] for o in outcomes):
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def children(as_json: bool) -> None:
    """My child sessions (the owner's: sessions with no parent)."""
    common.children(as_json)


@cli.command()
@click.argument("session", type=SESSION)
@click.option("-n", "--lines", default=40, show_default=True, help="How many lines.")
@click.option("--transcript", is_flag=True, help="The last assistant messages instead of the screen.")
@click.option("--raw", is_flag=True, help="The screen as it is: input box and footer included.")
def output(session: str, lines: int, transcript: bool, raw: bool) -> None:
    """What SESSION has done: the last lines of its screen above the input box and footer."""
    query = f"lines={lines}" + ("&transcript=1" if transcript else "") + ("&raw=1" if raw else "")
    click.echo(call("GET", f"/sessions/{segment(session)}/output?{query}")["output"])


@cli.command()
@click.argument("session", type=SESSION)
@click.option("--json", "as_json", is_flag=True)
def what(session: str, as_json: bool) -> None:
    """A short summary of what SESSION is doing."""
    out = call("GET", f"/sessions/{segment(session)}/what", timeout=120)
    if as_json:
        emit_json(out)
        return
    click.echo(out["summary"])
    if out.get("options"):
        click.echo("options:\n" + common.options_text(out["options"]))


@cli.command()
@click.argument("session", type=SESSION)
def attach(session: str) -> None:
    """Attach this terminal to SESSION's tmux session."""
    out = call("GET", f"/sessions/{segment(session)}")
    import shutil

    command = out["attach"]
    if not sys.stdout.isatty() or not shutil.which(command[0]):
        click.echo(" ".join(command))
        return
    if os.environ.get("TMUX"):
        from cli.completion import attach_from_tmux

        click.echo(attach_from_tmux(out["name"], command))
        return
    os.execvp(command[0], command)


@cli.command()
@click.argument("args", nargs=-1, required=True)
def name(args: tuple[str, ...]) -> None:
    """Rename: `sm name NEW` (yourself) or `sm name SESSION NEW`."""
    if len(args) == 1:
        me = os.environ.get("SM_SESSION_ID")
        if not me:
            fail("give the session to rename: sm name SESSION NEW")
        target, new = me, args[0]
    elif len(args) == 2:
        target, new = args
    else:
        fail("usage: sm name [SESSION] NEW")
    out = call("PATCH", f"/sessions/{segment(target)}", {"name": new})
    click.echo(f"{out['id']} is now {out['name']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "everything", is_flag=True,
              help="Every undelivered message, not only the recent ones (SM_STATUS_UNDELIVERED_WINDOW).")
def status(as_json: bool, everything: bool) -> None:
    """Who I am, every live session, and messages that could not be delivered."""
    common.status(as_json, everything)


def _others() -> list[dict[str, Any]]:
    # The owner's workspace is where they are; an agent's is its own (the server knows it).
    return call("GET", f"/sessions?scope=others&dir={segment(os.getcwd())}")


@cli.command()
def alone() -> None:
    """Exit 0 if no other live agent works in my workspace (git root), else 1 and list them."""
    others = _others()
    if not others:
        click.echo("alone")
        return
    names = ", ".join(f"{s['name']} ({s['id']})" for s in others)
    click.echo(f"not alone: {names}")
    sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def others(as_json: bool) -> None:
    """Other live agents working in my workspace (git root)."""
    sessions = _others()
    emit_json(sessions) if as_json else echo(table(sessions))


@cli.command()
@click.argument("session", type=SESSION, required=False)
@click.option("--since", help="Only model calls of the last 90s, 30m, 1h, 2d, ...")
@click.option("--json", "as_json", is_flag=True)
def cost(session: str | None, since: str | None, as_json: bool) -> None:
    """Tokens and cost of SESSION and its descendants (default: mine; the owner's: everything)."""
    from core.humanize import duration, spend

    query = []
    if session:
        query.append(f"session={segment(session)}")
    if since:
        try:
            query.append(f"since={duration(since):g}")
        except ValueError:
            fail(f"--since: not a duration: {since!r} (try 30m, 1h, 2d)")
    out = call("GET", "/cost" + ("?" + "&".join(query) if query else ""))
    if as_json:
        emit_json(out)
        return
    for row in out["sessions"]:
        echo(f"{row['name'][:20]:<20} {row['id']:<7} {spend(row['usage'])}")
    echo(f"{'total':<28} {spend(out['total'])}")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def worktrees(ctx: click.Context, as_json: bool) -> None:
    """The git worktrees sm made: branch, ahead/behind, dirty, and how to merge or remove each."""
    if ctx.invoked_subcommand is not None:
        return
    from cli.common import worktree_state

    found = call("GET", "/worktrees")
    if as_json:
        emit_json(found)
        return
    if not found:
        echo("(no worktrees)")
    for w in found:
        who = f"{w['name']} ({w['session']})" if w["live"] else f"ended ({w['session']})"
        echo(f"{w['path']} [{w['branch']}] {who}: {worktree_state(w)}")
        if w.get("merge"):
            echo(f"  merge:  {w['merge']}")


@worktrees.command("prune")
def worktrees_prune() -> None:
    """Remove the clean, merged worktrees of sessions that ended (and their branches)."""
    out = call("POST", "/worktrees/prune")
    for w in out["removed"]:
        echo(f"removed {w['path']} [{w['branch']}]")
    if not out["removed"]:
        echo("nothing to prune")


@cli.command()
@click.argument("event")
@click.argument("payload", required=False)
def hook(event: str, payload: str | None) -> None:
    """Claude Code hook entry point: reads the event JSON on stdin (used by sm's settings).

    `sm hook CodexTurnEnd JSON` is Codex's `notify` program: the JSON is its argument."""
    from hooks.entry import main as hook_main

    sys.exit(hook_main([event] + ([payload] if payload is not None else [])))


@cli.command()
@click.argument("reason")
def lock(reason: str) -> None:
    """Take my workspace's lock (its git root) while I do REASON; re-entrant."""
    out = call("POST", "/locks", {"reason": reason})
    echo(f"locked {out['workspace']}: {out['reason']}")


@cli.command()
@click.option("--workspace", "-w", help="(owner) the workspace to unlock.")
def unlock(workspace: str | None) -> None:
    """Release my workspace's lock (the owner: any, with --workspace)."""
    query = f"?workspace={segment(os.path.abspath(workspace))}" if workspace else ""
    out = call("DELETE", f"/locks{query}")
    echo(f"unlocked {out['workspace']}")


@cli.command("auto-lock")
def auto_lock() -> None:
    """PreToolUse hook for file writes: take the workspace lock or deny the write."""
    from hooks.entry import auto_lock as run

    sys.exit(run())


@cli.group()
def hooks() -> None:
    """Claude Code hook configuration."""


@hooks.command("install")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def hooks_install(directory: str) -> None:
    """Merge sm's hooks into DIRECTORY/.claude/settings.json, keeping what is there."""
    from hooks.install import install

    try:
        path, added = install(directory)
    except ValueError as exc:
        fail(str(exc))
    echo(f"{path}: added {added} hook(s)" if added else f"{path}: sm's hooks were already there")


from cli.doctor import doctor  # noqa: E402
from cli.server import logs, stop  # noqa: E402
from cli.service import service  # noqa: E402
from cli.setup import setup  # noqa: E402

for command in (doctor, stop, logs, service, setup):
    cli.add_command(command)


def main() -> None:
    """Run a command; usage errors exit 64 (EX_USAGE), so that 2 always means "server not running"."""
    try:
        code = cli.main(standalone_mode=False)
    except click.UsageError as exc:
        exc.show()
        sys.exit(EX_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
