"""Sessions through the real CLI, API socket, SQLite file and tmux."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
import stat
import subprocess
import threading
import time

from cli.client import ApiError, Client
from conftest import Server, wait_for


def test_spawned_shell_appears_in_children_and_status_then_dies_on_kill(server: Server) -> None:
    out = server.ok("spawn", "", "--provider", "shell", "--name", "worker")
    assert out.startswith("spawned worker (")
    server.wait_state("worker", "idle")
    children = server.json("children")
    assert [c["name"] for c in children] == ["worker"]
    assert "worker" in server.ok("status")
    tmux_session = children[0]["tmux_session"]

    assert "killed worker" in server.ok("kill", "worker")
    assert server.json("status")["sessions"] == []
    has = subprocess.run(["tmux", "-L", server.socket, "has-session", "-t", tmux_session],
                         capture_output=True)
    assert has.returncode != 0, "the tmux session outlived sm kill"


def test_spawn_prompt_arrives_in_the_pane(server: Server) -> None:
    server.ok("spawn", "echo spawned-$((6*7))", "--provider", "shell", "--name", "sh")
    wait_for(lambda: "spawned-42" in server.screen("sh"), message="the prompt to run")


def test_session_is_named_by_id_or_name_everywhere(server: Server) -> None:
    session = server.json("spawn", "", "--provider", "shell", "--name", "alpha")
    server.wait_state("alpha", "idle")
    assert server.json("status")["sessions"][0]["id"] == session["id"]
    server.ok("name", session["id"], "beta")
    assert server.session("beta")["id"] == session["id"]
    server.ok("output", "beta", "-n", "3")
    server.ok("kill", session["id"])


def test_restart_adopts_live_sessions_and_marks_vanished_ones_lost(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "keeper")
    server.ok("spawn", "", "--provider", "shell", "--name", "goner")
    server.wait_state("keeper", "idle")
    server.wait_state("goner", "idle")
    goner = server.session("goner")

    server.stop()
    subprocess.run(["tmux", "-L", server.socket, "kill-session", "-t", goner["tmux_session"]], check=True)
    server.start()

    live = {s["name"]: s for s in server.json("status")["sessions"]}
    assert "keeper" in live and live["keeper"]["state"] == "idle"
    # Its conversation could be resumed (sm resume): lost, not dead.
    assert live["goner"]["state"] == "lost" and "vanished" in live["goner"]["state_reason"]


def test_pane_killed_behind_the_servers_back_is_marked_lost(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "victim")
    victim = server.wait_state("victim", "idle")
    subprocess.run(["tmux", "-L", server.socket, "kill-session", "-t", victim["tmux_session"]], check=True)
    server.wait_state("victim", "lost")


def test_agent_exit_is_errored_with_its_status(server: Server) -> None:
    server.ok("spawn", "exit 7", "--provider", "shell", "--name", "quitter")
    s = wait_for(lambda: (s := server.session("quitter"))["state"] == "errored" and s,
                 message="quitter to be errored")
    assert "status 7" in s["state_reason"]


def test_missing_provider_command_leaves_session_failed_with_reason(server_factory) -> None:
    server = server_factory(SM_CODEX_COMMAND="no-such-codex-binary")
    result = server.sm("spawn", "hi", "--provider", "codex", "--name", "nocodex")
    assert result.returncode == 1
    assert "not found" in result.stderr and "no-such-codex-binary" in result.stderr
    s = server.session("nocodex")
    assert s["state"] == "errored" and s["state_reason"].startswith("failed to start")
    assert "failed to start" in server.ok("status")


def test_provider_that_exits_at_once_is_failed_not_running(server_factory) -> None:
    server = server_factory(SM_GEMINI_COMMAND="sh -c 'echo gemini-crashed >&2; exit 3'")
    spawned = server.sm("spawn", "", "--provider", "gemini", "--name", "flaky")
    # It may die before `sm spawn` answers (then spawn says so and exits 1), or just after.
    assert spawned.returncode == 0 or "failed to start" in spawned.stderr, spawned.stderr
    s = wait_for(lambda: (s := server.session("flaky"))["state"] == "errored" and s,
                 message="flaky to fail")
    assert s["state_reason"].startswith("failed to start: exited with status 3")
    assert "gemini-crashed" in s["state_reason"]


def test_agent_cannot_kill_a_sibling_but_can_kill_its_child(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "parent")
    server.ok("spawn", "", "--provider", "shell", "--name", "sibling")
    server.wait_state("parent", "idle")
    parent_env = server.agent_env("parent")

    refused = server.sm("kill", "sibling", env=parent_env)
    assert refused.returncode == 1
    assert "may not kill sibling" in refused.stderr
    assert server.state("sibling") != "dead"

    child = server.json("spawn", "", "--provider", "shell", "--name", "kid", env=parent_env)
    assert child["parent_id"] == parent_env["SM_SESSION_ID"]
    assert [c["name"] for c in server.json("children", env=parent_env)] == ["kid"]
    server.ok("kill", "kid", env=parent_env)
    server.ok("kill", "sibling")  # the owner may kill anything


def test_agent_acts_only_as_itself(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "me")
    server.wait_state("me", "idle")
    env = server.agent_env("me")
    me = server.session("me")
    # A forged identity field in the body is ignored: the token decides.
    os.environ["SM_TOKEN"] = env["SM_TOKEN"]
    try:
        client = Client(server.sock_path)
        child = client.request("POST", "/sessions", {"provider": "shell", "prompt": "", "name": "c1",
                                                     "parent_id": "ffffff", "sender": "owner"})
    finally:
        del os.environ["SM_TOKEN"]
    assert child["parent_id"] == me["id"]


def test_missing_or_wrong_token_is_401(server: Server) -> None:
    for token in ("", "not-a-token"):
        os.environ["SM_TOKEN"] = token
        os.environ["SM_STATE_DIR"] = str(server.tmp / "nowhere")  # no owner token to fall back on
        try:
            try:
                Client(server.sock_path).request("GET", "/sessions")
            except ApiError as exc:
                assert exc.status == 401
            else:
                raise AssertionError("request without a valid token was served")
        finally:
            del os.environ["SM_TOKEN"], os.environ["SM_STATE_DIR"]


def test_unknown_session_and_invalid_name_get_clear_errors(server: Server) -> None:
    result = server.sm("kill", "nosuch")
    assert result.returncode == 1
    assert result.stderr.strip() == "sm: no session 'nosuch': see `sm status` for the sessions there are"
    bad = server.sm("spawn", "", "--provider", "shell", "--name", "no spaces!")
    assert bad.returncode == 1 and "invalid name 'no spaces!'" in bad.stderr
    server.ok("spawn", "", "--provider", "shell", "--name", "taken")
    dup = server.sm("spawn", "", "--provider", "shell", "--name", "taken")
    assert dup.returncode == 1 and "name 'taken' is taken" in dup.stderr
    assert "Traceback" not in result.stderr + bad.stderr + dup.stderr


def test_cli_exits_2_with_the_start_command_when_the_server_is_down(server: Server) -> None:
    server.stop()
    result = server.sm("status")
    assert result.returncode == 2
    assert "not running" in result.stderr and "sm-bot" in result.stderr


def test_socket_and_owner_token_are_private(server: Server) -> None:
    assert stat.S_IMODE(server.sock_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((server.state_dir / "owner.token").stat().st_mode) == 0o600
    assert stat.S_IMODE(server.state_dir.stat().st_mode) == 0o700


def test_attach_prints_the_tmux_command_when_not_on_a_terminal(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "att")
    out = server.ok("attach", "att")
    assert out.split()[:3] == ["tmux", "-L", server.socket]
    assert server.session("att")["tmux_session"] in out


def test_alone_and_others_look_at_the_workspace(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "a1")
    server.wait_state("a1", "idle")
    env = server.agent_env("a1")
    assert server.sm("alone", env=env).returncode == 0
    server.ok("spawn", "", "--provider", "shell", "--name", "a2")
    result = server.sm("alone", env=env)
    assert result.returncode == 1 and "a2" in result.stdout
    assert [s["name"] for s in server.json("others", env=env)] == ["a2"]


def test_health_answers_while_five_sessions_spawn(server: Server) -> None:
    """The event loop is never blocked by tmux: spawns run in worker threads.

    The figure against the 50 ms target is measured in bench/; this test only
    proves that /health is served while the spawns are in flight.
    """
    os.environ["SM_STATE_DIR"] = str(server.state_dir)
    client = Client(server.sock_path)
    latencies: list[float] = []
    done = threading.Event()

    def spawn(i: int) -> None:
        client.request("POST", "/sessions", {"provider": "shell", "prompt": "", "name": f"s{i}"})

    try:
        threads = [threading.Thread(target=spawn, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()

        def probe() -> None:
            while not done.is_set():
                started = time.perf_counter()
                client.request("GET", "/health")
                latencies.append(time.perf_counter() - started)

        prober = threading.Thread(target=probe)
        prober.start()
        for t in threads:
            t.join()
        done.set()
        prober.join()
    finally:
        del os.environ["SM_STATE_DIR"]
    assert len(server.json("status")["sessions"]) == 5
    assert latencies, "no /health request completed during the spawns"
    assert max(latencies) < 0.5, f"/health stalled for {max(latencies):.3f}s during spawns"


def test_agent_token_is_on_no_command_line_and_not_in_tmux(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "secret")
    server.wait_state("secret", "idle")
    token = server.agent_env("secret")["SM_TOKEN"]
    assert len(token) > 20
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        assert token.encode() not in cmdline, f"the agent token is visible in `ps` (pid {proc.name})"
    shown = subprocess.run(["tmux", "-L", server.socket, "show-environment", "-g"],
                           capture_output=True, text=True).stdout
    assert token not in shown
    # ... and yet the agent has it: its own sm acts as itself.
    server.ok("send", "secret", 'sm status --json > me.json')
    wait_for(lambda: (server.workdir / "me.json").exists() and (server.workdir / "me.json").stat().st_size,
             message="the agent's sm to answer")
    import json as _json
    assert _json.loads((server.workdir / "me.json").read_text())["you"]["name"] == "secret"


def test_an_agent_can_kill_a_grandchild_whose_parent_died(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "lead")
    server.wait_state("lead", "idle")
    lead = server.agent_env("lead")
    server.ok("spawn", "", "--provider", "shell", "--name", "mid", env=lead)
    server.wait_state("mid", "idle")
    server.ok("spawn", "", "--provider", "shell", "--name", "leaf", env=server.agent_env("mid"))
    server.ok("kill", "mid", env=lead)
    server.ok("kill", "leaf", env=lead)


def test_an_agent_without_its_token_is_not_the_owner(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "me")
    server.ok("spawn", "", "--provider", "shell", "--name", "other")
    server.wait_state("me", "idle")
    env = server.agent_env("me")
    scrubbed = {**server.env, "SM_SESSION_ID": env["SM_SESSION_ID"]}
    result = subprocess.run([str(Path(sys.executable).parent / "sm"), "kill", "other"], env=scrubbed,
                            capture_output=True, text=True, cwd=server.workdir)
    assert result.returncode == 1 and "acts only as itself" in result.stderr
    assert server.state("other") != "dead"


OFFLINE_CLAUDE = ("sh -c 'echo Welcome to Claude Code; echo; "
                  "echo Failed to connect to api.anthropic.com: ENOTFOUND; "
                  "echo Note: Claude Code might not be available in your country. Check supported countries; "
                  "exit 1'")


def test_a_failed_start_names_the_error_line_not_the_last_line(server_factory) -> None:
    server = server_factory(SM_GEMINI_COMMAND=OFFLINE_CLAUDE)
    server.sm("spawn", "", "--provider", "gemini", "--name", "offline")  # may already say it failed
    s = wait_for(lambda: (s := server.session("offline"))["state"] == "errored" and s, message="offline to fail")
    assert s["state_kind"] == "start failed"
    assert s["state_reason"] == ("failed to start: exited with status 1: "
                                 "Failed to connect to api.anthropic.com: ENOTFOUND")
    assert "ENOTFOUND" in server.ok("status")


def test_a_failed_start_shows_until_its_name_is_wanted_again_then_the_new_start_takes_it(server_factory) -> None:
    server = server_factory(SM_CODEX_COMMAND="no-such-codex-binary")
    assert server.sm("spawn", "", "--provider", "codex", "--name", "scout").returncode == 1
    failed = server.session("scout")
    assert failed["state"] == "errored" and "failed to start" in server.ok("status")

    again = server.json("spawn", "", "--provider", "shell", "--name", "scout")
    assert again["id"] != failed["id"] and again["name"] == "scout"
    server.wait_state("scout", "idle")
    assert [s["id"] for s in server.json("status")["sessions"]] == [again["id"]]
    assert server.json("status")["sessions"][0]["state"] == "idle"
    # the failed start is history now, found by its id, with its cause
    old = server.client().request("GET", f"/sessions/{failed['id']}")
    assert old["state"] == "dead" and old["state_kind"] == "start failed"

    # renaming onto a failed start's name frees it the same way
    assert server.sm("spawn", "", "--provider", "codex", "--name", "probe").returncode == 1
    server.ok("name", "scout", "probe")
    assert [s["name"] for s in server.json("status")["sessions"]] == ["probe"]


def test_a_name_held_by_a_working_session_is_still_refused(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "busy1")
    result = server.sm("spawn", "", "--provider", "shell", "--name", "busy1")
    assert result.returncode == 1 and "taken" in result.stderr


def test_alone_and_others_use_the_owners_directory_and_an_agents_own(server: Server, tmp_path: Path) -> None:
    from conftest import SM

    there = tmp_path / "there"
    empty = tmp_path / "empty"
    there.mkdir()
    empty.mkdir()
    server.ok("spawn", "", "--provider", "shell", "--name", "here1")           # in the owner's workdir
    server.ok("spawn", "", "--provider", "shell", "--name", "there1", "--dir", str(there))
    server.wait_state("there1", "idle")

    def sm_in(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SM, *args], env=env or server.env, cwd=cwd, capture_output=True, text=True,
                              timeout=30)

    assert [s["name"] for s in json.loads(sm_in(server.workdir, "others", "--json").stdout)] == ["here1"]
    assert [s["name"] for s in json.loads(sm_in(there, "others", "--json").stdout)] == ["there1"]
    assert sm_in(empty, "alone").returncode == 0
    not_alone = sm_in(there, "alone")
    assert not_alone.returncode == 1 and "there1" in not_alone.stdout
    # an agent's workspace is its own workdir, wherever its shell has wandered
    agent = server.agent_env("there1")
    assert sm_in(server.workdir, "alone", env=agent).returncode == 0
    server.ok("spawn", "", "--provider", "shell", "--name", "there2", "--dir", str(there))
    assert [s["name"] for s in json.loads(sm_in(empty, "others", "--json", env=agent).stdout)] == ["there2"]
