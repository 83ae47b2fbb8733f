"""Smoke test for tests/fake_agent.py in a real tmux pane.

Other tests rely on the fake behaving like Claude Code (paste handling, hooks,
busy footer), so this pins those behaviours down directly.
"""
import json
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import holds

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_agent.py"
PYTHON = str(Path(sys.executable).absolute())
EVENTS = ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop", "SessionEnd"]



def wait_for(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_jsonl(path):
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # blank separator, or a line a hook is still writing
    return out


class Pane:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.socket = f"fake-smoke-{uuid.uuid4().hex[:8]}"
        self.hooks_file = tmp / "hooks.jsonl"
        self.log_file = tmp / "prompts.jsonl"
        cmd = f"cat >> {shlex.quote(str(self.hooks_file))}; echo >> {shlex.quote(str(self.hooks_file))}"
        settings = {"hooks": {ev: [{"hooks": [{"type": "command", "command": cmd, "timeout": 10}]}]
                              for ev in EVENTS}}
        settings_file = tmp / "settings.json"
        settings_file.write_text(json.dumps(settings))
        agent = shlex.join(["env", f"FAKE_AGENT_DIR={tmp}", PYTHON, str(FAKE),
                            "--settings", str(settings_file), "--log", str(self.log_file)])
        self.pane = self.tmux("new-session", "-d", "-P", "-F", "#{pane_id}", "-x", "200", "-y", "50",
                              "-s", "smoke", agent).strip()
        self.socket_path = self.tmux("display-message", "-p", "#{socket_path}").strip()

    def tmux(self, *args, input=None):
        return subprocess.run(["tmux", "-L", self.socket, *args], input=input, text=True,
                              capture_output=True, check=True, timeout=5).stdout

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", self.pane)

    def events(self):
        return [e["hook_event_name"] for e in read_jsonl(self.hooks_file)]

    def prompts(self):
        return [e["prompt"] for e in read_jsonl(self.log_file)]

    def paste(self, text, then_enter=False):
        self.tmux("load-buffer", "-b", "smoke", "-", input=text)
        extra = [";", "send-keys", "-t", self.pane, "Enter"] if then_enter else []
        # One tmux invocation so the Enter lands right behind the paste's end marker.
        self.tmux("paste-buffer", "-p", "-d", "-b", "smoke", "-t", self.pane, *extra)

    def kill(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=5)
        # kill-server leaves the socket file behind; don't litter /tmp/tmux-UID.
        Path(self.socket_path).unlink(missing_ok=True)


@pytest.fixture
def pane(tmp_path):
    p = Pane(tmp_path)
    try:
        yield p
    finally:
        p.kill()


def test_paste_enter_hooks_and_busy_footer(pane):
    wait_for(lambda: "SessionStart" in pane.events(), what="SessionStart hook")
    wait_for(lambda: "❯" in pane.screen() and "? for shortcuts" in pane.screen(), what="input box")

    # A settled paste followed by Enter submits exactly one multi-line prompt.
    pane.paste("line1\nline2")
    wait_for(lambda: "❯ line1⏎line2" in pane.screen(), what="paste in input box")
    # Past the fake's 80 ms Enter-swallow window, the paste sits in the box, unsubmitted.
    holds(lambda: "❯ line1⏎line2" in pane.screen() and pane.prompts() == [], 0.15, "the unsubmitted paste")
    pane.tmux("send-keys", "-t", pane.pane, "Enter")
    wait_for(lambda: pane.prompts() == ["line1\nline2"], what="first prompt logged")
    wait_for(lambda: pane.events().count("Stop") == 1, what="first Stop")

    # An Enter glued to the paste is swallowed: the text stays in the box and a later
    # keystroke plus Enter submits it together, as a single prompt.
    pane.paste("swallowed", then_enter=True)
    wait_for(lambda: "❯ swallowed" in pane.screen(), what="second paste in input box")
    holds(lambda: "❯ swallowed" in pane.screen() and len(pane.prompts()) == 1, 0.15, "the swallowed Enter")
    pane.tmux("send-keys", "-t", pane.pane, "-l", "X")
    pane.tmux("send-keys", "-t", pane.pane, "Enter")
    wait_for(lambda: len(pane.prompts()) >= 2, what="second prompt logged")
    assert pane.prompts() == ["line1\nline2", "swallowedX"]

    # A slow turn shows the busy footer while running and drops it after.
    pane.tmux("send-keys", "-t", pane.pane, "-l", "please sleep 2")
    pane.tmux("send-keys", "-t", pane.pane, "Enter")
    wait_for(lambda: "esc to interrupt" in pane.screen(), what="busy footer")
    wait_for(lambda: pane.events().count("Stop") == 3, timeout=20, what="third Stop")
    wait_for(lambda: "esc to interrupt" not in pane.screen() and "Worked for" in pane.screen(),
             what="idle footer")
    assert pane.prompts() == ["line1\nline2", "swallowedX", "please sleep 2"]

    turn = ["UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop"]
    assert pane.events() == ["SessionStart"] + turn * 3
    hooks = read_jsonl(pane.hooks_file)
    assert hooks[1]["prompt"] == "line1\nline2"
    assert hooks[4]["last_assistant_message"] == "ok: line1"
    assert len({h["session_id"] for h in hooks}) == 1


def test_escape_interrupts_without_stop(pane):
    wait_for(lambda: "? for shortcuts" in pane.screen(), what="input box")
    pane.tmux("send-keys", "-t", pane.pane, "-l", "sleep 5")
    pane.tmux("send-keys", "-t", pane.pane, "Enter")
    wait_for(lambda: "PostToolUse" in pane.events(), what="tool hooks")
    pane.tmux("send-keys", "-t", pane.pane, "Escape")
    wait_for(lambda: "Interrupted by user" in pane.screen(), what="interrupt notice")
    assert "esc to interrupt" not in pane.screen()

    # The next turn's hooks follow directly: the interrupted turn never fired Stop.
    pane.tmux("send-keys", "-t", pane.pane, "-l", "/clear")
    pane.tmux("send-keys", "-t", pane.pane, "Enter")
    wait_for(lambda: pane.events().count("SessionStart") == 2, what="/clear SessionStart")
    assert pane.events() == ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse",
                             "SessionEnd", "SessionStart"]
    hooks = read_jsonl(pane.hooks_file)
    assert hooks[4]["reason"] == "clear" and hooks[5]["source"] == "clear"
    assert hooks[4]["session_id"] == hooks[0]["session_id"] != hooks[5]["session_id"]

    # Ctrl-C on an empty, idle box quits with SessionEnd.
    pane.tmux("send-keys", "-t", pane.pane, "C-c")
    wait_for(lambda: pane.events()[-1:] == ["SessionEnd"], what="exit SessionEnd")
    assert read_jsonl(pane.hooks_file)[-1]["reason"] == "prompt_input_exit"
