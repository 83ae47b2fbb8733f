#!/usr/bin/env python3
"""A scripted stand-in for the Claude Code TUI, for tests that drive real tmux panes.

It reproduces only what sm observes: the screen shapes (input box, busy footer),
the input quirks (bracketed paste, Enter-after-paste swallowing, ESC interrupt) and
the hook/transcript side effects, without any model behind it.

Usage: python tests/fake_agent.py [--settings FILE] [--log FILE] [--resume SESSION_ID] [other args ignored]
       (--resume continues that conversation, as Claude's does: same session id and
       transcript, SessionStart with source "resume")
Env:   FAKE_AGENT_DIR (where transcripts go), FAKE_AGENT_STARTUP_DELAY (seconds),
       FAKE_AGENT_LIMIT_TEXT (the usage-limit notice of a prompt with "hit-limit"),
       FAKE_AGENT_USAGE (JSON: each answer's transcript line records a model call with this usage),
       FAKE_AGENT_SWALLOW_ENTERS (ignore this many Enters on a non-empty box, as a
       busy terminal may).
"""
import argparse
import datetime
import json
import os
import queue
import re
import select
import signal
import subprocess
import tempfile
import termios
import threading
import time
import tty
import uuid

PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"
ENTER_AFTER_PASTE_GRACE = 0.08  # Claude folds an Enter this soon after a paste into the paste
ESC_WAIT = 0.05                 # how long a bare ESC may wait for the rest of a sequence
DEFAULT_BUSY = 0.3
HOOK_TIMEOUT = 60
TOOL = {"tool_name": "Bash", "tool_input": {"command": "true"}, "tool_use_id": "toolu_x"}


class Hooks:
    """Runs hook commands on one worker thread so they fire strictly in order
    while the UI thread keeps reading keys."""

    def __init__(self, settings_path):
        self.config = {}
        if settings_path:
            try:
                with open(settings_path) as f:
                    self.config = json.load(f).get("hooks") or {}
            except (OSError, ValueError, AttributeError):
                self.config = {}  # a broken settings file must not stop the agent
        self.q = queue.Queue()
        threading.Thread(target=self._worker, daemon=True).start()

    def _commands(self, event, payload):
        out = []
        for group in self.config.get(event) or []:
            matcher = group.get("matcher") or "*"
            if "tool_name" in payload and matcher != "*":
                try:
                    if not re.fullmatch(matcher, payload["tool_name"]):
                        continue
                except re.error:
                    if matcher != payload["tool_name"]:
                        continue
            for h in group.get("hooks") or []:
                if h.get("type", "command") == "command" and h.get("command"):
                    out.append((h["command"], h.get("timeout") or HOOK_TIMEOUT))
        return out

    def fire(self, event, payload):
        """Queue the event's hooks; the returned Event is set once they have all run."""
        done = threading.Event()
        self.q.put((self._commands(event, payload), json.dumps(payload), done))
        return done

    def _worker(self):
        env = dict(os.environ, CLAUDE_PROJECT_DIR=os.getcwd())
        while True:
            commands, data, done = self.q.get()
            for command, timeout in commands:
                try:
                    # Output is discarded: anything a hook prints would corrupt the screen.
                    subprocess.run(command, shell=True, input=data.encode(), timeout=timeout,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                except Exception:
                    pass  # fail open, like Claude
            done.set()


class FakeAgent:
    def __init__(self, args):
        self.hooks = Hooks(args.settings)
        self.log_path = args.log
        self.dir = os.environ.get("FAKE_AGENT_DIR") or tempfile.gettempdir()
        os.makedirs(self.dir, exist_ok=True)
        self.lock = threading.RLock()  # guards all UI/turn state and screen writes
        self.new_session()
        self.buffer = ""
        self.transcript = []
        self.start_source = "startup"
        if args.resume:
            self.sid = args.resume
            self.tp = os.path.join(self.dir, f"fake-agent-{self.sid}.jsonl")
            self.start_source = "resume"
            self.transcript.append(f"↺ Resumed conversation {self.sid}")
        self.queued = []       # prompts submitted while busy, run FIFO when the turn ends
        self.turn = None       # threading.Event of the live turn; set() means interrupted
        self.worked = None     # "✻ Worked for Ns" line after a finished turn
        self.running = True
        self.in_paste = False
        self.paste_end_at = -1.0
        self.pending = b""
        self.esc_deadline = None
        self.size = None
        self.swallow = int(os.environ.get("FAKE_AGENT_SWALLOW_ENTERS") or 0)

    # ---- session / hooks ------------------------------------------------
    def new_session(self):
        self.sid = str(uuid.uuid4())
        self.tp = os.path.join(self.dir, f"fake-agent-{self.sid}.jsonl")

    def fire(self, event, **extra):
        payload = {"session_id": self.sid, "transcript_path": self.tp, "cwd": os.getcwd(),
                   "hook_event_name": event, "permission_mode": "default", **extra}
        return self.hooks.fire(event, payload)

    def write_transcript(self, entry):
        entry["timestamp"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        entry["sessionId"] = self.sid
        with open(self.tp, "a") as f:
            f.write(json.dumps(entry) + "\n")

    # ---- screen ---------------------------------------------------------
    def draw(self, starting=False):
        with self.lock:
            w, h = tuple(os.get_terminal_size(1)) if os.isatty(1) else (80, 24)
            self.size = (w, h)
            head = [" ✻ Fake agent (fake-agent 1.0)"]
            if starting:
                self.write(head + ["", "Starting…"])
                return
            rule = "─" * w
            # Wrap the input box ourselves so the layout never depends on terminal autowrap.
            text = "❯ " + self.buffer.replace("\n", "⏎")
            rows = [text[i:i + w - 1] for i in range(0, len(text), w - 1)] or ["❯ "]
            rows = rows[-max(1, h // 2):]
            busy = self.turn is not None
            footer = "  ✢ Working… (esc to interrupt)" if busy else "  ? for shortcuts"
            bottom = ([] if busy or not self.worked else [self.worked]) + ["", rule]
            bottom += rows + [rule, footer]
            room = max(0, h - len(head) - len(bottom))
            body = [line[:w] for line in self.transcript][-room:] if room else []
            self.write((head + body + bottom)[-h:])

    def write(self, lines):
        # Raw mode disables output post-processing, hence explicit \r\n and no final newline.
        data = ("\x1b[H\x1b[2J" + "\r\n".join(lines)).encode()
        while data:
            data = data[os.write(1, data):]

    # ---- turns ----------------------------------------------------------
    def submit(self, text):
        """Called with the lock held; starts a turn (or /clear) for `text`."""
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"prompt": text, "t": time.time()}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        if re.search(r"\bexit-now\b", text):
            restore_terminal()
            os._exit(3)  # a crash: no hooks, no cleanup
        if text.strip() == "/clear":
            # Claude handles /clear locally: no UserPromptSubmit, just a session swap.
            self.fire("SessionEnd", reason="clear")
            self.new_session()
            self.transcript, self.worked = [], None
            self.fire("SessionStart", source="clear")
            self.draw()
            return
        first = text.split("\n", 1)[0]
        self.transcript.append("> " + first)
        self.write_transcript({"type": "user", "message": {"role": "user", "content": text}})
        self.worked = None
        self.turn = threading.Event()
        ups_done = self.fire("UserPromptSubmit", prompt=text)
        threading.Thread(target=self.run_turn, args=(text, self.turn, ups_done),
                         daemon=True).start()
        self.draw()

    def run_turn(self, text, token, ups_done):
        started = time.monotonic()
        m = re.search(r"sleep (\d+(?:\.\d+)?)", text)
        duration = float(m.group(1)) if m else DEFAULT_BUSY

        def wait(done):  # False if the user interrupted while we waited
            while not done.wait(0.02):
                if token.is_set():
                    return False
            return not token.is_set()

        # Claude blocks the turn on UserPromptSubmit (it may add context or veto).
        if not wait(ups_done):
            return
        work_start = time.monotonic()
        if not wait(self.fire("PreToolUse", **TOOL)):
            return
        if not wait(self.fire("PostToolUse", **TOOL, tool_response={})):
            return
        if token.wait(max(0.0, work_start + duration - time.monotonic())):
            return
        with self.lock:
            if token.is_set() or self.turn is not token:
                return  # lost a race with ESC
            if re.search(r"\bhit-limit\b", text):
                # Like Claude 2.1.330 at a usage limit: the notice on screen and a
                # StopFailure (error "rate_limit", the notice in error_details), no Stop.
                notice = os.environ.get("FAKE_AGENT_LIMIT_TEXT") or "You've hit your limit"
                self.transcript.append("⎿ " + notice)
                self.turn = None
                self.fire("StopFailure", error="rate_limit", error_details=notice)
                self.draw()
                return
            reply = "ok: " + text.split("\n", 1)[0][:60]
            self.transcript.append("● " + reply)
            message = {"role": "assistant", "content": [{"type": "text", "text": reply}]}
            if os.environ.get("FAKE_AGENT_USAGE"):
                # As Claude Code records a model call: its id, model and usage.
                message |= {"id": "msg_" + uuid.uuid4().hex[:16], "model": "claude-opus-5-5",
                            "usage": json.loads(os.environ["FAKE_AGENT_USAGE"])}
            self.write_transcript({"type": "assistant", "message": message})
            self.turn = None
            self.worked = f"✻ Worked for {round(time.monotonic() - started)}s"
            self.fire("Stop", stop_hook_active=False, last_assistant_message=reply)
            if self.queued:
                self.submit(self.queued.pop(0))
            else:
                self.draw()

    def interrupt(self):
        if self.turn is None:
            return
        self.turn.set()
        self.turn = None
        self.transcript.append("⎿ Interrupted by user")
        self.write_transcript({"type": "user", "message": {
            "role": "user", "content": [{"type": "text", "text": "[Request interrupted by user]"}]}})
        # Like Claude: queued prompts come back into the input box instead of running. No Stop.
        if self.queued:
            self.buffer = "\n".join(self.queued + ([self.buffer] if self.buffer else []))
            self.queued = []
        self.draw()

    # ---- input ----------------------------------------------------------
    def handle(self, now):
        """Consume as much of self.pending as forms complete keys; called with the lock held."""
        p = self.pending
        while p:
            if self.in_paste:
                # Hold the whole paste until its end marker so split UTF-8/CRLF stay intact.
                end = p.find(PASTE_END)
                if end < 0:
                    break
                # Terminals (and tmux paste-buffer) send newlines as CR; Claude normalises them.
                text = p[:end].decode("utf-8", "replace")
                self.buffer += text.replace("\r\n", "\n").replace("\r", "\n")
                p = p[end + len(PASTE_END):]
                self.in_paste, self.paste_end_at = False, now
                continue
            b = p[0]
            if b == 0x1B:
                if len(p) == 1:
                    if self.esc_deadline is None:
                        self.esc_deadline = now + ESC_WAIT
                    if now < self.esc_deadline:
                        break  # maybe the start of a sequence; wait a little
                    p, self.esc_deadline = b"", None
                    self.interrupt()
                    continue
                self.esc_deadline = None
                if p[1:2] == b"[":
                    m = re.match(rb"\x1b\[[0-?]*[ -/]*[@-~]", p)
                    if not m:
                        if len(p) < 32:
                            break  # incomplete CSI, wait for the rest
                        p = p[2:]
                        continue
                    p = p[m.end():]
                    if m.group() == PASTE_START:
                        self.in_paste = True
                    continue  # other CSI sequences (arrows, focus...) are ignored
                # SS3 keys (application-mode arrows) are ignored; ESC+other is a bare ESC.
                ss3 = p[1:2] == b"O"
                p = p[3:] if ss3 else p[1:]
                if not ss3:
                    self.interrupt()
                continue
            if b == 0x0D:
                p = p[1:]
                if now - self.paste_end_at < ENTER_AFTER_PASTE_GRACE:
                    continue  # swallowed, as Claude does right after a paste
                if self.swallow > 0 and self.buffer:
                    self.swallow -= 1
                    continue
                if self.buffer.endswith("\\"):
                    # Like Claude: backslash-Enter is a line break, not a submit.
                    self.buffer = self.buffer[:-1] + "\n"
                    continue
                text, self.buffer = self.buffer, ""
                if text:
                    if self.turn is not None:
                        self.queued.append(text)
                    else:
                        self.submit(text)
            elif b in (0x7F, 0x08):
                p, self.buffer = p[1:], self.buffer[:-1]
            elif b == 0x03:
                p = p[1:]
                if self.buffer:
                    self.buffer = ""
                elif self.turn is not None:
                    self.interrupt()
                else:
                    self.running = False
                    break
            elif b < 0x20:
                p = p[1:]
            else:
                n = 1 if b < 0x80 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
                if len(p) < n:
                    break  # split UTF-8 character
                self.buffer += p[:n].decode("utf-8", "replace")
                p = p[n:]
        self.pending = p

    def run(self):
        delay = float(os.environ.get("FAKE_AGENT_STARTUP_DELAY") or 0)
        if delay > 0:
            self.draw(starting=True)
            end = time.monotonic() + delay
            while time.monotonic() < end:
                # Keys typed before the UI is up are lost, so a too-eager sender is caught.
                if select.select([0], [], [], max(0.0, end - time.monotonic()))[0]:
                    if not os.read(0, 4096):
                        return
        self.draw()
        self.fire("SessionStart", source=self.start_source)
        hung_up = []
        # Like Claude 2.1.330: hung up (its tmux server killed), it still runs SessionEnd, reason "other".
        signal.signal(signal.SIGHUP, lambda *_: hung_up.append(True))
        while self.running and not hung_up:
            timeout = 0.1
            if self.esc_deadline is not None:
                timeout = max(0.0, self.esc_deadline - time.monotonic())
            try:
                ready = select.select([0], [], [], timeout)[0]
                data = os.read(0, 4096) if ready else b""
            except OSError:
                ready, data = [0], b""
            if ready and not data:
                hung_up.append(True)  # terminal gone
                break
            with self.lock:
                self.pending += data
                self.handle(time.monotonic())
                resized = os.isatty(1) and tuple(os.get_terminal_size(1)) != self.size
                if data or resized:
                    self.draw()
        # Ctrl-C exit (or a hang-up): Claude runs SessionEnd before quitting.
        self.fire("SessionEnd", reason="other" if hung_up else "prompt_input_exit").wait(30)


_saved_tty = None


def restore_terminal():
    os.write(1, b"\x1b[?2004l\r\n")
    if _saved_tty is not None:
        try:
            termios.tcsetattr(0, termios.TCSADRAIN, _saved_tty)
        except termios.error:
            pass


def main():
    global _saved_tty
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--settings")
    parser.add_argument("--log")
    parser.add_argument("--resume")
    args, _ = parser.parse_known_args()
    if os.isatty(0):
        _saved_tty = termios.tcgetattr(0)
        tty.setraw(0)
    os.write(1, b"\x1b[?2004h")
    try:
        FakeAgent(args).run()
    finally:
        restore_terminal()


if __name__ == "__main__":
    main()
