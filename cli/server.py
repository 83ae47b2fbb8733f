"""`sm stop` and `sm logs`: the server's life, seen from the CLI."""

from __future__ import annotations

import os
import sys
import time

import click

from cli.client import Client, ServerDown
from cli.common import call, fail
from core import paths

LOG_NAME = "sm-bot.log"


def wait_until_down(client: Client, timeout: float = 30.0) -> bool:
    """True once nothing answers on the socket (sm-bot removes it as it exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.request("GET", "/health", timeout=2)
        except ServerDown:
            return True
        except Exception:  # a connection cut mid-shutdown
            pass
        time.sleep(0.1)
    return False


@click.command()
def stop() -> None:
    """Stop sm-bot gracefully (owner only). The agents keep running; the next start adopts them."""
    client = Client()
    try:
        client.request("GET", "/health", timeout=5)
    except ServerDown:
        click.echo("sm-bot is not running")
        return
    out = call("POST", "/shutdown")
    if not wait_until_down(client):
        fail(f"sm-bot (pid {out['pid']}) is still running after 30 s; see `sm logs`")
    click.echo(f"stopped sm-bot (pid {out['pid']}); the agents keep running in tmux")
    if _under_systemd(out["pid"]):
        click.echo("it ran as a service: start it again with systemctl --user start sm-bot")


def _under_systemd(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as fh:
            return "sm-bot.service" in fh.read()
    except OSError:
        return False


def log_path() -> str:
    return os.path.join(paths.state_dir(), LOG_NAME)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they are written.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines from the end.")
def logs(follow: bool, lines: int) -> None:
    """sm-bot's log (<state dir>/sm-bot.log, rotated at 5 MB, three kept)."""
    path = log_path()
    if not os.path.exists(path):
        fail(f"no log at {path} yet (sm-bot writes it once it starts)")
    if follow:
        # tail -F follows the file across rotation; Ctrl-C ends it.
        os.execvp("tail", ["tail", "-n", str(lines), "-F", path])
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 256 * 1024))
        tail = fh.read().splitlines()[-lines:] if lines > 0 else []
    sys.stdout.buffer.write(b"".join(line + b"\n" for line in tail))
