"""sm-bot as a service: the unit it installs, stopping it, its logs, and agents outliving it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from cli.service import env_file_text, launchd_plist, service_environment, systemd_unit
from conftest import SM, SM_BOT, Server, wait_for


def has_session(server: Server, tmux_session: str) -> bool:
    return subprocess.run(["tmux", "-L", server.socket, "has-session", "-t", tmux_session],
                          capture_output=True).returncode == 0


def verify(unit_dir: Path, text: str) -> list[str]:
    """systemd-analyze's complaints about this unit file (it exits 0 on most of them)."""
    path = unit_dir / "sm-bot.service"
    unit_dir.mkdir(exist_ok=True)
    path.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                            capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if str(path) in line] + \
        ([f"exit {result.returncode}"] if result.returncode else [])


def test_the_systemd_unit_signals_only_sm_bot_so_the_agents_survive(tmp_path: Path) -> None:
    unit = systemd_unit(SM_BOT, str(tmp_path), str(tmp_path / "service.env"))
    lines = unit.splitlines()
    assert "KillMode=process" in lines  # not control-group: tmux lives in the unit's cgroup
    assert f"ExecStart={SM_BOT}" in lines and f"WorkingDirectory={tmp_path}" in lines
    assert f"EnvironmentFile=-{tmp_path / 'service.env'}" in lines
    assert "Restart=on-failure" in lines and "WantedBy=default.target" in lines
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed; the text was checked above")
    assert verify(tmp_path / "good", unit) == []
    # The check does catch a broken unit.
    assert verify(tmp_path / "bad", unit.replace("KillMode=process", "KillMode=gently")) != []


def test_the_service_gets_path_and_sm_settings_but_no_agents_identity() -> None:
    env = service_environment({"PATH": "/opt/node/bin:/usr/bin", "SM_STATE_DIR": "/srv/sm",
                               "SM_TELEGRAM_TOKEN": "1:x", "SM_TOKEN": "agent-secret",
                               "SM_SESSION_ID": "abc123", "HOME": "/home/u"})
    assert env == {"PATH": "/opt/node/bin:/usr/bin", "SM_STATE_DIR": "/srv/sm", "SM_TELEGRAM_TOKEN": "1:x"}
    assert 'SM_STATE_DIR="/srv/sm"' in env_file_text(env).splitlines()
    plist = launchd_plist(SM_BOT, "/tmp", env, "/srv/sm").decode()
    assert "<key>AbandonProcessGroup</key>\n\t<true/>" in plist and SM_BOT in plist


def test_service_install_print_shows_the_unit_and_changes_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "SM_STATE_DIR": str(tmp_path / "st")}
    result = subprocess.run([SM, "service", "install", "--print"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "KillMode=process" in result.stdout and f"SM_STATE_DIR=\"{tmp_path / 'st'}\"" in result.stdout
    assert not (tmp_path / "config").exists()


def test_sigterm_to_the_whole_process_group_leaves_the_agents_and_a_restart_adopts_them(tmp_path: Path) -> None:
    server = Server(tmp_path)
    try:
        # Its own process group, as a service manager or a terminal gives it.
        server.proc = subprocess.Popen([SM_BOT], env=server.env, cwd=tmp_path, start_new_session=True,
                                       stdout=open(server.log, "ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: server.sm("status").returncode == 0, 20, message="sm-bot to answer")
        server.ok("spawn", "", "--provider", "shell", "--name", "keeper")
        keeper = server.wait_state("keeper", "idle")

        os.killpg(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(45) == 0  # a clean stop; once seen over 15 s under full-suite load
        assert has_session(server, keeper["tmux_session"]), "a signal to sm-bot's group killed an agent"
        assert server.sm("status").returncode == 2
        assert not server.sock_path.exists()  # no stale socket left behind

        server.start()
        assert server.state("keeper") == "idle"
        server.ok("send", "keeper", "echo adopted-$((6*7))")
        wait_for(lambda: "adopted-42" in server.screen("keeper"), 30, message="the adopted agent to answer")
    finally:
        server.close()


def test_sm_stop_is_for_the_owner_and_leaves_the_agents(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "stayer")
    stayer = server.wait_state("stayer", "idle")
    as_agent = server.sm("stop", env=server.agent_env("stayer"))
    assert as_agent.returncode == 1 and "only the owner" in as_agent.stderr
    assert server.sm("status").returncode == 0

    out = server.ok("stop")
    assert "stopped sm-bot" in out and "agents keep running" in out
    assert server.proc.wait(45) == 0
    assert has_session(server, stayer["tmux_session"])
    assert server.sm("status").returncode == 2
    assert "not running" in server.ok("stop")  # a second stop has nothing to do


def test_sm_logs_prints_the_tail_of_the_servers_log(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "logged")
    server.wait_state("logged", "idle")
    out = server.ok("logs", "-n", "200")
    assert "sm-bot ready" in out and "logged" in out
    assert len(server.ok("logs", "-n", "2").splitlines()) == 2
