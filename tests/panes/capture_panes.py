"""Re-capture the pane fixtures in this directory from the real Claude Code and Codex CLIs.

    .venv/bin/python tests/panes/capture_panes.py [--out DIR] [--only claude|codex|shell]

Runs the real binaries (tests/claude_home.CLAUDE_BIN, tests/codex_home.CODEX_BIN)
in a private tmux server (200x50) against tests/fake_anthropic.py and
tests/fake_openai.py, and writes what ``tmux capture-pane -p -t %N`` prints
(plain text, no ANSI).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS))

from claude_home import CLAUDE_BIN, make_claude_home  # noqa: E402
from codex_home import CODEX_BIN, make_codex_home  # noqa: E402

from core.providers import get_provider  # noqa: E402

SOCKET = "sm-capture-panes"
RULE = "─" * 20


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str, input: str | None = None) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            check=True, capture_output=True, text=True, input=input,
        ).stdout

    def new(self, name: str, cwd: Path, env: dict[str, str], cmd: list[str]) -> str:
        flags: list[str] = []
        for k, v in env.items():
            flags += ["-e", f"{k}={v}"]
        has_server = subprocess.run(
            ["tmux", "-L", self.socket, "has-session"], capture_output=True
        ).returncode == 0
        if has_server:
            out = self("new-window", "-d", "-P", "-F", "#{pane_id}", "-n", name,
                       "-c", str(cwd), *flags, *cmd)
        else:
            out = self("new-session", "-d", "-P", "-F", "#{pane_id}", "-s", name,
                       "-x", "200", "-y", "50", "-c", str(cwd), *flags, *cmd)
        return out.strip()

    def capture(self, pane: str) -> str:
        return self("capture-pane", "-p", "-t", pane)

    def type(self, pane: str, text: str) -> None:
        self("send-keys", "-t", pane, "-l", text)

    def key(self, pane: str, key: str) -> None:
        self("send-keys", "-t", pane, key)

    def paste(self, pane: str, text: str) -> None:
        self("load-buffer", "-b", "cap", "-", input=text)
        self("paste-buffer", "-p", "-d", "-b", "cap", "-t", pane)

    def kill_server(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def wait_screen(tmux: Tmux, pane: str, pred, what: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux.capture(pane)
        if pred(screen):
            return screen
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}; last screen:\n{screen}")


def wait_settled(tmux: Tmux, pane: str, pred, what: str, timeout: float = 30.0) -> str:
    """Like wait_screen, then until two captures in a row are the same (the TUI stopped drawing)."""
    previous = wait_screen(tmux, pane, pred, what, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.25)  # poll interval
        screen = tmux.capture(pane)
        if screen == previous and pred(screen):
            return screen
        previous = screen
    raise TimeoutError(f"the screen never settled after {what}")


def footer(screen: str) -> str:
    """Text below the input box's lower rule."""
    lines = screen.rstrip("\n").split("\n")
    rules = [i for i, line in enumerate(lines) if line.startswith(RULE)]
    return "\n".join(lines[rules[-1] + 1:]) if rules else ""


def input_line(screen: str) -> str:
    lines = screen.split("\n")
    rules = [i for i, line in enumerate(lines) if line.startswith(RULE)]
    if len(rules) < 2:
        return ""
    return "\n".join(lines[rules[-2] + 1:rules[-1]])


def claude_idle(screen: str) -> bool:
    f = footer(screen)
    return "? for shortcuts" in f and "esc to interrupt" not in f


def claude_busy(screen: str) -> bool:
    return "esc to interrupt" in footer(screen)


SPINNER = re.compile(r"^\S \w+…", re.M)


def codex_idle(screen: str) -> bool:
    return "? for shortcuts" in screen and "esc to interrupt" not in screen


def codex_box(screen: str) -> str:
    """The text of Codex's input box: its last "› " line (Codex draws no rules)."""
    prompts = [line for line in screen.split("\n") if line.startswith("› ")]
    return prompts[-1][2:] if prompts else ""


def answer(tmux: Tmux, pane: str, provider: str, screen: str, label: str) -> None:
    """Choose a dialog's option with the keys sm's screen reader gives for it."""
    dialog = get_provider(provider).read_screen(screen).dialog
    assert dialog is not None, f"the reader saw no dialog on:\n{screen}"
    option = next(o for o in dialog.options if o.label.startswith(label))
    for key in option.keys:
        tmux.key(pane, key)


def submit(tmux: Tmux, pane: str, text: str) -> None:
    tmux.type(pane, text)
    wait_settled(tmux, pane, lambda s: text[:40] in input_line(s), f"typed {text!r}")
    tmux.key(pane, "Enter")


def clear_input(tmux: Tmux, pane: str) -> None:
    tmux.key(pane, "C-c")
    wait_screen(tmux, pane, lambda s: input_line(s).strip() == "❯", "input cleared")
    # "Press Ctrl-C again to exit" sits in the footer for a moment.
    wait_screen(tmux, pane, claude_idle, "footer back to idle", timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--only", choices=["claude", "codex", "shell"], action="append",
                    help="capture only these agents' screens (repeatable)")
    args = ap.parse_args()
    only = set(args.only or ["claude", "codex", "shell"])
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    def save(name: str, screen: str) -> None:
        (out / name).write_text(screen)
        print(f"wrote {name}", file=sys.stderr)

    fake = subprocess.Popen(
        [sys.executable, str(TESTS / "fake_anthropic.py"), "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    fake_openai = subprocess.Popen(
        [sys.executable, str(TESTS / "fake_openai.py"), "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    tmux = Tmux(SOCKET)
    tmux.kill_server()
    cleanup: list[Path] = []
    try:
        url = fake.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://"), url
        openai_url = fake_openai.stdout.readline().strip()  # type: ignore[union-attr]
        assert openai_url.startswith("http://"), openai_url
        tmp = Path(tempfile.mkdtemp(prefix="sm-panes-"))
        cleanup.append(tmp)
        if "claude" in only:
            capture_claude(tmux, tmp, url, save)
        if "codex" in only:
            capture_codex(tmux, tmp, openai_url, save)
        if "shell" in only:
            capture_shell(tmux, tmp, save)
    finally:
        tmux.kill_server()
        for server in (fake, fake_openai):
            server.terminate()
            server.wait(5)
        # Exiting shells still write history files for a moment after kill-server.
        deadline = time.monotonic() + 5
        while any(d.exists() for d in cleanup) and time.monotonic() < deadline:
            for d in cleanup:
                shutil.rmtree(d, ignore_errors=True)
            time.sleep(0.5)


def capture_claude(tmux: Tmux, tmp: Path, url: str, save) -> None:
    # --- Claude, Bash allowed -------------------------------------------
    work = tmp / "work-allowed"
    work.mkdir()
    env = make_claude_home(tmp / "home-allowed", work, allow_bash=True)
    env["ANTHROPIC_BASE_URL"] = url
    pane = tmux.new("allowed", work, env, [str(CLAUDE_BIN)])
    s = wait_settled(tmux, pane, lambda s: claude_idle(s) and "❯" in input_line(s), "startup")
    save("claude-startup-ready.idle.txt", s)

    tmux.type(pane, "hello there, this is typed but not sent")
    s = wait_settled(tmux, pane, lambda s: "not sent" in input_line(s), "typed input")
    save("claude-typed-input.idle.txt", s)
    tmux.key(pane, "Enter")
    s = wait_settled(tmux, pane, lambda s: claude_idle(s) and re.search(r"✻ \S+ for \d+s", s) and "ok: hello there" in s, "first turn")
    save("claude-after-turn.idle.txt", s)

    submit(tmux, pane, "please think a while SLOW 8")
    save("claude-thinking.busy.txt", wait_screen(tmux, pane, claude_busy, "busy (SLOW 8)"))
    wait_screen(tmux, pane, lambda s: claude_idle(s) and "ok: please think" in s, "SLOW done", 20)

    # Text typed while it works: the footer loses "esc to interrupt"; the
    # spinner line above the box is the only sign of work left.
    submit(tmux, pane, "please think again SLOW 8")
    wait_screen(tmux, pane, claude_busy, "busy (SLOW 8, again)")
    tmux.type(pane, "typed while it works")
    # The spinner animates, so these screens never settle: take the first match.
    s = wait_screen(tmux, pane, lambda s: "typed while it works" in input_line(s) and SPINNER.search(s),
                    "typed while busy")
    save("claude-typed-while-busy.busy.txt", s)
    wait_screen(tmux, pane, lambda s: "ok: please think again" in s and not SPINNER.search(s), "SLOW done", 20)
    clear_input(tmux, pane)

    submit(tmux, pane, "RUN: sleep 5")
    s = wait_screen(tmux, pane, lambda s: claude_busy(s) and "sleep 5" in s.split("RUN: sleep 5")[-1], "tool running")
    save("claude-tool-running.busy.txt", s)
    wait_screen(tmux, pane, lambda s: claude_idle(s) and "● done" in s, "tool done", 20)

    tmux.paste(pane, "first line of a pasted message\nsecond line\nthird line")
    s = wait_settled(tmux, pane, lambda s: "third line" in input_line(s), "3-line paste")
    save("claude-paste-inline.idle.txt", s)
    clear_input(tmux, pane)

    tmux.paste(pane, "\n".join(f"pasted line {i}" for i in range(1, 16)))
    s = wait_settled(tmux, pane, lambda s: "[Pasted text" in input_line(s), "15-line paste")
    save("claude-multiline-paste.idle.txt", s)
    clear_input(tmux, pane)

    # --- Claude, Bash not allowed: the permission dialog ------------------
    work = tmp / "work-ask"
    work.mkdir()
    env = make_claude_home(tmp / "home-ask", work, allow_bash=False)
    env["ANTHROPIC_BASE_URL"] = url
    pane = tmux.new("ask", work, env, [str(CLAUDE_BIN)])
    wait_settled(tmux, pane, lambda s: claude_idle(s) and "❯" in input_line(s), "startup (ask)")
    # `echo hi` is read-only, so 2.1.330 runs it without asking; `touch` asks.
    submit(tmux, pane, "RUN: touch made-by-claude.txt")
    s = wait_settled(tmux, pane, lambda s: "Do you want to proceed?" in s, "permission dialog")
    save("claude-bash-permission.waiting.txt", s)
    tmux.key(pane, "1")
    wait_screen(tmux, pane, lambda s: claude_idle(s) and "● done" in s, "after permission")

    # --- Claude, startup dialogs (key not approved / folder not trusted) --
    work = tmp / "work-key"
    work.mkdir()
    env = make_claude_home(tmp / "home-key", work, allow_bash=False)
    cj = tmp / "home-key" / ".claude.json"
    state = json.loads(cj.read_text())
    state["customApiKeyResponses"] = {"approved": [], "rejected": []}
    cj.write_text(json.dumps(state))
    env["ANTHROPIC_BASE_URL"] = url
    pane = tmux.new("key", work, env, [str(CLAUDE_BIN)])
    s = wait_settled(tmux, pane, lambda s: "Do you want to use this API key?" in s, "API key dialog")
    save("claude-api-key-prompt.waiting.txt", s)

    work = tmp / "work-untrusted"
    work.mkdir()
    env = make_claude_home(tmp / "home-untrusted", tmp / "somewhere-else", allow_bash=False)
    env["ANTHROPIC_BASE_URL"] = url
    pane = tmux.new("untrusted", work, env, [str(CLAUDE_BIN)])
    s = wait_settled(tmux, pane, lambda s: "Yes, I trust this folder" in s, "trust dialog")
    save("claude-trust-dialog.waiting.txt", s)

    # --- Claude on a fresh home: the auto-mode nudge ----------------------
    work = tmp / "work-nudge"
    work.mkdir()
    env = make_claude_home(tmp / "home-nudge", work, allow_bash=False)
    cj = tmp / "home-nudge" / ".claude.json"
    state = json.loads(cj.read_text())
    del state["hasSeenAutoDefaultNudge"]
    cj.write_text(json.dumps(state))
    env["ANTHROPIC_BASE_URL"] = url
    pane = tmux.new("nudge", work, env, [str(CLAUDE_BIN)])
    s = wait_settled(tmux, pane, lambda s: "No, keep manual mode" in s, "auto-mode nudge")
    save("claude-auto-mode-nudge.waiting.txt", s)
    answer(tmux, pane, "claude", s, "No, keep manual mode")
    wait_screen(tmux, pane, claude_idle, "idle after the nudge")


def capture_codex(tmux: Tmux, tmp: Path, url: str, save) -> None:
    codex = [str(CODEX_BIN)]
    work = tmp / "work-codex"
    work.mkdir()
    env = make_codex_home(tmp / "codex-home", work, url) | {"HOME": str(tmp)}
    pane = tmux.new("codex", work, env, codex)
    s = wait_settled(tmux, pane, lambda s: codex_idle(s) and "Ask Codex" in codex_box(s), "codex startup")
    save("codex-startup-ready.idle.txt", s)

    tmux.type(pane, "hello codex, this is typed but not sent")
    s = wait_settled(tmux, pane, lambda s: "not sent" in codex_box(s), "codex typed input")
    save("codex-typed-input.idle.txt", s)
    tmux.key(pane, "Enter")
    s = wait_settled(tmux, pane, lambda s: codex_idle(s) and "• ok: hello codex" in s and "Worked for" in s,
                     "codex first turn")
    save("codex-after-turn.idle.txt", s)

    tmux.type(pane, "please think a while SLOW 8")
    wait_settled(tmux, pane, lambda s: "SLOW 8" in codex_box(s), "typed SLOW 8")
    tmux.key(pane, "Enter")
    save("codex-thinking.busy.txt", wait_screen(tmux, pane, lambda s: "esc to interrupt" in s, "codex busy"))
    tmux.type(pane, "typed while it works")
    s = wait_screen(tmux, pane, lambda s: "typed while it works" in codex_box(s) and "esc to interrupt" in s,
                    "codex typed while busy")
    save("codex-typed-while-busy.busy.txt", s)
    wait_screen(tmux, pane, lambda s: "• ok: please think" in s and "esc to interrupt" not in s, "codex SLOW done", 20)
    tmux.key(pane, "C-u")
    wait_screen(tmux, pane, lambda s: codex_idle(s) and "Ask Codex" in codex_box(s), "codex box cleared")

    tmux.type(pane, "RUN: sleep 5")
    wait_settled(tmux, pane, lambda s: "RUN: sleep 5" in codex_box(s), "typed RUN")
    tmux.key(pane, "Enter")
    # Codex shows the command only once it has run; meanwhile its status line counts it.
    s = wait_screen(tmux, pane, lambda s: "esc to interrupt" in s and "1 background terminal running" in s,
                    "codex tool running")
    save("codex-tool-running.busy.txt", s)
    wait_screen(tmux, pane, lambda s: codex_idle(s) and "• done" in s, "codex tool done", 20)

    tmux.type(pane, "ASK: touch approved-by-codex.txt")
    wait_settled(tmux, pane, lambda s: "ASK: touch" in codex_box(s), "typed ASK")
    tmux.key(pane, "Enter")
    s = wait_settled(tmux, pane, lambda s: "Would you like to run the following command?" in s, "codex approval")
    save("codex-approval.waiting.txt", s)
    answer(tmux, pane, "codex", s, "Yes, proceed")
    wait_screen(tmux, pane, lambda s: (work / "approved-by-codex.txt").exists() and codex_idle(s),
                "codex approved command ran")

    # A home that has not yet answered the new-model dialog.
    work = tmp / "work-codex-nudge"
    work.mkdir()
    env = make_codex_home(tmp / "codex-home-nudge", work, url, model_nudge=True) | {"HOME": str(tmp)}
    pane = tmux.new("codex-nudge", work, env, codex)
    s = wait_settled(tmux, pane, lambda s: "Use existing model" in s, "codex model nudge")
    save("codex-model-nudge.waiting.txt", s)
    answer(tmux, pane, "codex", s, "Use existing model")
    wait_screen(tmux, pane, codex_idle, "codex idle after the nudge")

    # A git repository Codex was never told to trust.
    work = tmp / "work-codex-repo"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    env = make_codex_home(tmp / "codex-home-repo", None, url) | {"HOME": str(tmp)}
    pane = tmux.new("codex-repo", work, env, codex)
    s = wait_settled(tmux, pane, lambda s: "Trust and continue" in s, "codex trust dialog")
    save("codex-trust-dialog.waiting.txt", s)
    answer(tmux, pane, "codex", s, "Trust and continue")
    wait_screen(tmux, pane, codex_idle, "codex idle after trusting", 30)


def capture_shell(tmux: Tmux, tmp: Path, save) -> None:
    # --- A plain shell ----------------------------------------------------
    pane = tmux.new("shell", tmp, {"PS1": "$ "}, ["bash", "--noprofile", "--norc", "-i"])
    wait_screen(tmux, pane, lambda s: s.rstrip().endswith("$"), "shell prompt")
    tmux.type(pane, "echo hello")
    tmux.key(pane, "Enter")
    wait_screen(tmux, pane, lambda s: s.rstrip().endswith("hello\n$"), "echo done")
    save("shell-prompt.idle.txt", tmux.capture(pane))
    tmux.type(pane, "sleep 5")
    tmux.key(pane, "Enter")
    s = wait_settled(tmux, pane, lambda s: s.rstrip().endswith("$ sleep 5"), "sleep started")
    save("shell-running.busy.txt", s)


if __name__ == "__main__":
    main()
