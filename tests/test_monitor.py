"""The monitor: tmux reports changes, the screen repairs lost hooks, a slow poll is the net.

Each test runs a real sm-bot on a private tmux server. Where a test is about
the event path, the safety-net poll is set far beyond the test's deadline
(SM_MONITOR_POLL_INTERVAL=600), so only a tmux notification can explain what
the test sees.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Callable

import pytest

from conftest import Server, wait_for

NO_NET = "600"


def tmux(server: Server, *args: str) -> str:
    return subprocess.run(["tmux", "-L", server.socket, *args], capture_output=True, text=True,
                          check=True).stdout


def shell_pid(server: Server, name: str) -> int:
    """The agent's own process: the shell the pane's wrapper (sh -c) runs."""
    wrapper = int(tmux(server, "display-message", "-p", "-t", server.session(name)["pane_id"],
                       "#{pane_pid}").strip())
    children = open(f"/proc/{wrapper}/task/{wrapper}/children").read().split()
    assert len(children) == 1, f"expected the wrapper to run one shell, found {children}"
    return int(children[0])


def errored(server: Server, name: str) -> Callable[[], dict | bool]:
    return lambda: (s := server.session(name))["state"] == "errored" and s


def test_killed_shell_is_errored_by_the_tmux_event(server_factory) -> None:
    server = server_factory(SM_MONITOR_POLL_INTERVAL=NO_NET)
    server.ok("spawn", "", "--provider", "shell", "--name", "victim")
    server.wait_state("victim", "idle")

    os.kill(shell_pid(server, "victim"), signal.SIGKILL)

    s = wait_for(errored(server, "victim"), 30, message="victim to be errored")
    assert "agent exited with status 137" in s["state_reason"]
    assert "victim" in server.ok("status")


def test_session_killed_behind_sms_back_is_lost_by_the_tmux_event(server_factory) -> None:
    server = server_factory(SM_MONITOR_POLL_INTERVAL=NO_NET)
    server.ok("spawn", "", "--provider", "shell", "--name", "goner")
    goner = server.wait_state("goner", "idle")

    tmux(server, "kill-session", "-t", goner["tmux_session"])

    server.wait_state("goner", "lost", 10)


def test_shell_command_is_seen_busy_then_idle_by_the_tmux_event(server_factory) -> None:
    server = server_factory(SM_MONITOR_POLL_INTERVAL=NO_NET)
    server.ok("spawn", "", "--provider", "shell", "--name", "worker")
    pane = server.wait_state("worker", "idle")["pane_id"]

    tmux(server, "send-keys", "-t", pane, "sleep 3", "Enter")
    server.wait_state("worker", "busy", 10)
    server.wait_state("worker", "idle", 15)


def test_safety_net_catches_a_death_whose_notification_was_lost(server_factory) -> None:
    server = server_factory(SM_MONITOR_POLL_INTERVAL="1")
    server.ok("spawn", "", "--provider", "shell", "--name", "quiet")
    server.wait_state("quiet", "idle")
    tmux(server, "set-hook", "-gu", "pane-died")
    assert "pane-died[" not in tmux(server, "show-hooks", "-gw")

    os.kill(shell_pid(server, "quiet"), signal.SIGKILL)

    s = wait_for(errored(server, "quiet"), 30, message="the safety net to find the dead pane")
    assert "status 137" in s["state_reason"]


def test_lost_stop_is_repaired_from_the_screen(server: Server) -> None:
    server.spawn_agent("claude1")
    server.ok("send", "claude1", "sleep 60")
    server.wait_state("claude1", "busy")
    # A person interrupts at the terminal: the agent goes idle on screen and,
    # like Claude Code after an interrupt, fires no Stop hook.
    pane = server.session("claude1")["pane_id"]
    tmux(server, "send-keys", "-t", pane, "Escape")
    wait_for(lambda: "Interrupted" in server.screen("claude1"), message="the interrupt on screen")
    assert server.state("claude1") == "busy", "something other than the screen said idle"

    server.wait_state("claude1", "idle", 20)


def test_monitor_client_never_counts_as_a_person_attached_to_an_agent(server_factory) -> None:
    server = server_factory(SM_MONITOR_POLL_INTERVAL=NO_NET)
    server.ok("spawn", "", "--provider", "shell", "--name", "alone")
    agent = server.wait_state("alone", "idle")["tmux_session"]

    clients = tmux(server, "list-clients", "-F", "#{client_control_mode} #{session_name}")
    assert "1 sm-monitor" in clients, clients
    attached = dict(line.split() for line in
                    tmux(server, "list-sessions", "-F", "#{session_name} #{session_attached}").splitlines())
    assert attached[agent] == "0"


@pytest.mark.parametrize("screen, cause", [
    (["Welcome to Claude Code", "Failed to connect to api.anthropic.com: ENOTFOUND",
      "Note: Claude Code might not be available in your country."],
     "Failed to connect to api.anthropic.com: ENOTFOUND"),
    (["bash: claude: command not found"], "bash: claude: command not found"),
    (["Error: EACCES: permission denied, open '/x'", "    at Object.openSync", "Node.js v20.1.0"],
     "Error: EACCES: permission denied, open '/x'"),
    (["Exiting everything now", "bye"], "bye"),
    ([], ""),
], ids=["offline claude", "not found", "node stack", "no error: the last line", "nothing"])
def test_a_dead_agents_cause_is_its_lowest_error_line(screen: list[str], cause: str) -> None:
    from core.monitor import last_words

    assert last_words(list(reversed(screen))) == cause
