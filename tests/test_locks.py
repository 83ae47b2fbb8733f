"""Workspace locks, and the file-write hook that takes them (`sm auto-lock`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import Server, holds, wait_for

SM = str(Path(sys.executable).parent / "sm")


def write_hook(server: Server, name: str, path: str = "src/app.py") -> tuple[subprocess.CompletedProcess, float]:
    """Run the hook Claude Code runs before a Write, as agent `name`."""
    payload = {"hook_event_name": "PreToolUse", "tool_name": "Write",
               "tool_input": {"file_path": str(server.workdir / path), "content": "x"}}
    env = {**server.env, **server.agent_env(name)}
    started = time.monotonic()
    result = subprocess.run([SM, "auto-lock"], input=json.dumps(payload), env=env, text=True,
                            capture_output=True, timeout=120)
    return result, time.monotonic() - started


def two_agents(server: Server) -> tuple[dict, dict]:
    a = server.json("spawn", "", "--provider", "shell", "--name", "alice", "--dir", str(server.workdir))
    b = server.json("spawn", "", "--provider", "shell", "--name", "bob", "--dir", str(server.workdir))
    server.wait_state("alice", "idle")
    server.wait_state("bob", "idle")
    return a, b


def test_second_writer_waits_until_the_first_unlocks(server: Server) -> None:
    two_agents(server)
    alice = server.agent_env("alice")
    assert "locked" in server.ok("lock", "refactoring the parser", env=alice)
    result: dict = {}
    writer = threading.Thread(target=lambda: result.update(zip(("r", "t"), write_hook(server, "bob"))))
    writer.start()
    holds(writer.is_alive, 1.5, "the second writer being held")
    server.ok("unlock", env=alice)
    writer.join(30)
    assert result["r"].returncode == 0 and result["r"].stdout == "", result["r"].stdout
    assert result["t"] >= 1.5
    locks = server.json("status")["locks"]
    assert [(lk["holder_name"], lk["auto"]) for lk in locks] == [("bob", True)]


def test_second_writer_is_denied_after_the_wait(server_factory) -> None:
    server = server_factory(SM_LOCK_WAIT="1")
    a, _ = two_agents(server)
    server.ok("lock", "migrating the schema", env=server.agent_env("alice"))
    result, took = write_hook(server, "bob")
    decision = json.loads(result.stdout)["hookSpecificOutput"]
    assert decision["permissionDecision"] == "deny"
    assert decision["permissionDecisionReason"] == (
        f"workspace locked by alice ({a['id']}): migrating the schema; wait, or work in a git worktree")
    assert 1 <= took < 10


def test_a_killed_holder_frees_the_lock(server: Server) -> None:
    two_agents(server)
    server.ok("lock", "holding", env=server.agent_env("alice"))
    server.ok("kill", "alice")
    assert "locked" in server.ok("lock", "mine now", env=server.agent_env("bob"))


def test_another_agent_cannot_release_it_but_the_owner_can(server: Server) -> None:
    two_agents(server)
    server.ok("lock", "holding", env=server.agent_env("alice"))
    refused = server.sm("unlock", env=server.agent_env("bob"))
    assert refused.returncode == 1 and "only the holder or the owner" in refused.stderr
    assert server.json("status")["locks"][0]["holder_name"] == "alice"
    server.ok("unlock", "--workspace", str(server.workdir))
    assert server.json("status")["locks"] == []


def test_lock_is_reentrant_and_shown_in_status(server: Server) -> None:
    two_agents(server)
    alice = server.agent_env("alice")
    server.ok("lock", "first", env=alice)
    server.ok("lock", "second", env=alice)
    assert write_hook(server, "alice")[0].stdout == ""  # its own lock does not block its writes
    text = server.ok("status")
    assert "locks:" in text and "alice" in text and "manual: second" in text
    assert not any(p.name.endswith(".lock") for p in server.workdir.iterdir()), "lock file in the repo"


def test_an_automatic_lock_ends_with_the_turn(server: Server) -> None:
    two_agents(server)
    write_hook(server, "bob")
    assert server.json("status")["locks"][0]["auto"] is True
    env = {**server.env, **server.agent_env("bob")}
    subprocess.run([SM, "hook", "Stop"], input=b'{"hook_event_name": "Stop"}', env=env, check=True)
    wait_for(lambda: server.json("status")["locks"] == [], message="the auto lock to go")


def test_a_manual_lock_outlives_the_turn(server: Server) -> None:
    two_agents(server)
    server.ok("lock", "long job", env=server.agent_env("alice"))
    env = {**server.env, **server.agent_env("alice")}
    subprocess.run([SM, "hook", "Stop"], input=b'{"hook_event_name": "Stop"}', env=env, check=True)
    assert server.json("status")["locks"][0]["reason"] == "long job"


def test_clear_releases_the_lock(server: Server) -> None:
    two_agents(server)
    server.ok("lock", "holding", env=server.agent_env("alice"))
    server.ok("clear", "alice")
    assert server.json("status")["locks"] == []


def test_the_lock_scope_is_the_git_root(server: Server) -> None:
    subprocess.run(["git", "init", "-q", str(server.workdir)], check=True)
    sub = server.workdir / "pkg"
    sub.mkdir()
    server.json("spawn", "", "--provider", "shell", "--name", "top", "--dir", str(server.workdir))
    server.json("spawn", "", "--provider", "shell", "--name", "deep", "--dir", str(sub))
    server.ok("lock", "top level", env=server.agent_env("top"))
    refused = server.sm("lock", "in pkg", env=server.agent_env("deep"))
    assert refused.returncode == 1 and "workspace locked by top" in refused.stderr


def test_auto_lock_outside_a_managed_session_allows(server: Server) -> None:
    env = {k: v for k, v in server.env.items() if k not in ("SM_TOKEN", "SM_SESSION_ID")}
    result = subprocess.run([SM, "auto-lock"], input='{"tool_name": "Write"}', env=env, text=True,
                            capture_output=True, timeout=30)
    assert result.returncode == 0 and result.stdout == ""


def test_hooks_install_keeps_existing_settings(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / ".claude").mkdir(parents=True)
    mine = {"permissions": {"allow": ["Bash(ls:*)"]}, "model": "opus",
            "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}}
    (project / ".claude" / "settings.json").write_text(json.dumps(mine))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    out = subprocess.run([SM, "hooks", "install", str(project)], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "added" in out
    settings = json.loads((project / ".claude" / "settings.json").read_text())
    assert settings["permissions"] == mine["permissions"] and settings["model"] == "opus"
    stop = [h["command"] for e in settings["hooks"]["Stop"] for h in e["hooks"]]
    assert stop[0] == "notify-send done" and stop[1].endswith("sm hook Stop")
    writes = [e for e in settings["hooks"]["PreToolUse"] if "Write" in e.get("matcher", "")]
    assert writes and writes[0]["hooks"][0]["command"].endswith("sm auto-lock")
    again = subprocess.run([SM, "hooks", "install", str(project)], env=env, capture_output=True, text=True,
                           check=True).stdout
    assert "already there" in again
    assert json.loads((project / ".claude" / "settings.json").read_text()) == settings


def test_a_lock_lapses_when_its_holder_stays_silent_past_the_lease(server_factory) -> None:
    server = server_factory(SM_LOCK_LEASE="1")
    two_agents(server)
    server.ok("lock", "then went quiet", env=server.agent_env("alice"))
    refused = server.sm("lock", "mine", env=server.agent_env("bob"))
    assert refused.returncode == 1 and "workspace locked by alice" in refused.stderr
    # No activity from alice for longer than the lease: bob may take it.
    wait_for(lambda: server.sm("lock", "mine", env=server.agent_env("bob")).returncode == 0, 30, 0.2,
             "the lease to lapse")
    assert server.json("status")["locks"][0]["holder_name"] == "bob"
