"""`sm wait` and `sm spawn --wait`: the waiter is woken by a message, never by polling."""

from __future__ import annotations

import re
import time

from conftest import Server


def wake_for(server: Server, target: str, timeout: float = 20) -> str:
    return server.wait_prompt(lambda p: p.startswith("[sm]") and target in p, timeout,
                              f"the wake-up about {target}")


def test_wait_returns_at_once_and_wakes_the_waiter_when_the_target_is_idle(server: Server) -> None:
    server.spawn_agent("boss")
    server.spawn_agent("worker", "task sleep 2")
    server.wait_state("worker", "busy")
    started = time.monotonic()
    out = server.ok("wait", "worker", "60", env=server.agent_env("boss"))
    assert time.monotonic() - started < 5, "sm wait blocked its caller"
    assert "will wake you" in out
    wake = wake_for(server, "worker")
    assert re.fullmatch(r"\[sm\] worker is idle \(after \d+s\)", wake)
    assert server.prompts().index("[from owner] task sleep 2") < server.prompts().index(wake)


def test_send_then_wait_never_wakes_early(server: Server) -> None:
    """The target is idle when the wait is registered, but a task is queued for it."""
    server.spawn_agent("boss")
    server.spawn_agent("worker")
    boss = server.agent_env("boss")
    server.ok("send", "worker", "the job sleep 2", env=boss)
    server.ok("wait", "worker", "60", env=boss)
    wake = wake_for(server, "worker")
    seconds = int(re.search(r"after (\d+)s", wake).group(1))
    assert seconds >= 2, f"woke after {seconds}s, before the 2 s job could finish"
    prompts = server.prompts()
    assert any("the job" in p for p in prompts[: prompts.index(wake)])


def test_wait_times_out_with_a_message(server: Server) -> None:
    server.spawn_agent("boss")
    server.spawn_agent("worker", "long task sleep 30")
    server.wait_state("worker", "busy")
    server.ok("wait", "worker", "1", env=server.agent_env("boss"))
    assert wake_for(server, "worker", 10) == "[sm] timeout: worker still busy after 1s"


def test_wait_survives_a_restart_of_the_server(server: Server) -> None:
    server.spawn_agent("boss")
    server.spawn_agent("worker", "task sleep 4")
    server.wait_state("worker", "busy")
    server.ok("wait", "worker", "60", env=server.agent_env("boss"))
    server.restart()
    assert re.fullmatch(r"\[sm\] worker is idle \(after \d+s\)", wake_for(server, "worker"))


def test_wait_fires_when_the_target_dies(server: Server) -> None:
    server.spawn_agent("boss")
    server.spawn_agent("worker", "task sleep 30")
    server.wait_state("worker", "busy")
    server.ok("wait", "worker", "60", env=server.agent_env("boss"))
    server.ok("kill", "worker")
    assert wake_for(server, "worker") == "[sm] worker is dead: killed by owner"


def test_spawn_wait_wakes_the_parent_when_the_child_finishes_its_first_task(server: Server) -> None:
    server.spawn_agent("boss")
    out = server.ok("spawn", "first job sleep 1", "--provider", "claude", "--name", "kid",
                    "--wait", "60", env=server.agent_env("boss"))
    assert out.startswith("spawned kid")
    wake = wake_for(server, "kid")
    assert re.fullmatch(r"\[sm\] kid is idle \(after \d+s\)", wake)
    prompts = server.prompts()
    assert prompts.index("[from boss (" + server.session("boss")["id"] + ")] first job sleep 1") < prompts.index(wake)


def test_owner_wait_is_refused_with_a_reason(server: Server) -> None:
    server.spawn_agent("worker")
    result = server.sm("wait", "worker", "10")
    assert result.returncode == 1 and "inside a session" in result.stderr


def test_wait_on_unknown_session_is_a_clear_error(server: Server) -> None:
    server.spawn_agent("boss")
    result = server.sm("wait", "ghost", "10", env=server.agent_env("boss"))
    assert result.returncode == 1 and "no session 'ghost'" in result.stderr
