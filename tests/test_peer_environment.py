"""Identity from the kernel and secrets kept from agents: the pure parts, on real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from core.environment import is_secret, scrub
from core.peer import ancestry, pane_of, parent_of, peer_credentials


def test_peer_credentials_name_the_connecting_process(tmp_path) -> None:
    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got: list[tuple[int, int] | None] = []

    def accept() -> None:
        conn, _ = server.accept()
        got.append(peer_credentials(conn))
        conn.close()

    thread = threading.Thread(target=accept)
    thread.start()
    child = subprocess.Popen([sys.executable, "-c",
                              f"import socket; s=socket.socket(socket.AF_UNIX); s.connect({path!r}); s.recv(1)"])
    thread.join(10)
    child.wait(10)
    server.close()
    assert got == [(child.pid, os.getuid())]


def test_a_process_is_traced_to_the_pane_it_runs_in() -> None:
    # sh (the "pane") -> sh -c -> sleep: the grandchild is found to be inside the pane.
    pane = subprocess.Popen(["sh", "-c", "sh -c 'sleep 30; true' & wait"])
    try:
        def grandchild() -> int | None:
            kids = subprocess.run(["pgrep", "-P", str(pane.pid)], capture_output=True, text=True).stdout.split()
            for kid in kids:
                grand = subprocess.run(["pgrep", "-P", kid], capture_output=True, text=True).stdout.split()
                if grand:
                    return int(grand[0])
            return None

        from conftest import wait_for
        leaf = wait_for(grandchild, 30, message="the grandchild")
        assert parent_of(parent_of(leaf)) == pane.pid
        assert pane.pid in list(ancestry(leaf))
        assert pane_of(leaf, {pane.pid: "a1b2c3"}) == "a1b2c3"
        assert pane_of(os.getpid(), {pane.pid: "a1b2c3"}) is None  # the test runner is outside it
    finally:
        subprocess.run(["pkill", "-P", str(pane.pid)])
        pane.kill()
        pane.wait()


def test_a_vanished_process_has_no_parent() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert parent_of(gone.pid) == 0
    assert list(ancestry(gone.pid)) == [gone.pid]


def test_sm_secrets_are_scrubbed_and_the_persons_environment_passes() -> None:
    env = {
        "SM_TELEGRAM_TOKEN": "123:abc", "SM_NATS_URL": "nats://x", "SM_NATS_CREDS": "/c",
        "SM_OWNER_TOKEN": "t", "SM_API_KEY": "k", "SM_DB_PASSWORD": "p", "MY_CORP_SECRET": "s",
        "SM_STATE_DIR": "/state", "SM_SESSION_ID": "a1b2c3", "ANTHROPIC_API_KEY": "sk-ant",
        "SSH_AUTH_SOCK": "/agent", "HTTPS_PROXY": "http://p", "CLAUDE_CONFIG_DIR": "/c",
        "PATH": "/bin",
    }
    removed = scrub(env, deny=["MY_CORP_*"])
    assert sorted(removed) == ["MY_CORP_SECRET", "SM_API_KEY", "SM_DB_PASSWORD", "SM_NATS_CREDS",
                               "SM_NATS_URL", "SM_OWNER_TOKEN", "SM_TELEGRAM_TOKEN"]
    assert set(env) == {"SM_STATE_DIR", "SM_SESSION_ID", "ANTHROPIC_API_KEY", "SSH_AUTH_SOCK",
                        "HTTPS_PROXY", "CLAUDE_CONFIG_DIR", "PATH"}
    assert not is_secret("SM_SOCKET") and not is_secret("SM_MONITOR_IDLE_TIMEOUT")
