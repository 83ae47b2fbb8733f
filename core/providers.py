"""What sm knows about each kind of agent: how to launch it, clear it, and read its screen.

A provider's screen reading is the fallback to hooks: it yields the state a
screen shows and the text a person may have left in the input box. The
markers come from real captures kept in tests/panes/ (see its README).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from core.types import PROVIDER_NAMES

RULE_RE = re.compile(r"^\s*─{8,}")
OPTION_RE = re.compile(r"^\s*(?:❯\s*)?(\d)[.)]\s+(\S.*)$")
NUMBERED_RE = re.compile(r"^(\d{1,2})[.)]\s+(\S.*)$")
SHELLS = frozenset({"bash", "zsh", "sh", "dash", "fish", "ksh"})

# Claude Code's spinner line above the input box: a glyph at the left edge, a
# verb and "…", maybe a timer or token count: "✢ Moonwalking… (1s · ↓ 10 tokens)".
# The glyph animates (✶ * ✢ ✻ ✽ ·), so it is any symbol but the reply bullet
# (●) or a prompt. After the turn the line becomes "✻ Worked for 3s", with no "…".
CLAUDE_SPINNER_RE = re.compile(r"^[^\w\s●⎿❯›│]\s+[A-Z][\w'-]*(?: [\w'-]+){0,3}…(?:\s+\([^)]*\))?\s*$")
# Codex's status line above its input box: "• Working (2s • esc to interrupt)".
CODEX_SPINNER_RE = re.compile(r"^\S\s+\S.*\((?:\d+h\s*)?(?:\d+m\s*)?\d+s\s*•\s*esc to interrupt\)")
# A finished turn: Claude's "✻ Worked for 3s", Codex's "Worked for 8s • 22:27".
TURN_DONE_RE = re.compile(r"^(?:\S\s+)?\s*[A-Z][\w'-]* for (?:<?\d+[hms]\b)")
# What Codex shows in its empty input box (dim text, which a plain capture cannot tell from typing).
CODEX_PLACEHOLDERS = frozenset({
    "Ask Codex to do anything", "Explain this codebase", "Summarize recent commits",
    "Find and fix a bug in @filename", "Write tests for @filename", "Improve documentation in @filename",
    "Run /review on my current changes", "Use /skills to list available skills",
})


@dataclass(frozen=True)
class Option:
    """One choice of a dialog, and the keys (tmux key names, pressed in order) that choose it."""

    label: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Dialog:
    """A list of choices on screen in place of the input box: the agent waits on a person."""

    question: str  # the line(s) asking, e.g. "Do you want to proceed?"
    options: tuple[Option, ...]
    text: str = ""  # the dialog's whole body above its options (title, command, path...)


@dataclass(frozen=True)
class ScreenReading:
    state: str | None  # "idle" | "busy" | "waiting" | None (can't tell: starting, or unknown)
    input_text: str = ""  # what sits in the input box, unsubmitted
    dialog: Dialog | None = None  # set when state is "waiting" and the choices could be read


def dialog_options(screen: str, provider: Provider | None = None) -> list[tuple[str, str]]:
    """The options of a dialog at the bottom of a screen: [(keys, label)].

    ``keys`` is what ``Engine.press_keys`` takes: the option's digit for a
    numbered dialog, else space-separated key names ("Down Enter"). Prefer
    ``provider.read_screen(screen).dialog``, which knows the agent's keys.
    """
    if provider is not None:
        dialog = provider.read_screen(screen).dialog
    else:
        dialog = find_dialog(screen.splitlines())
    if dialog is not None:
        return [(" ".join(o.keys), o.label[:60]) for o in dialog.options]
    options: list[tuple[str, str]] = []
    for line in [ln for ln in screen.splitlines() if ln.strip()][-25:]:
        found = OPTION_RE.match(line)
        if found:
            digit, label = found.group(1), found.group(2).strip()
            if options and digit == "1":
                options = []  # a later dialog replaces an earlier list
            options.append((digit, label[:60]))
    return options


def find_dialog(lines: list[str], cursors: tuple[str, ...] = ("❯", "›"),
                digits: bool = True) -> Dialog | None:
    """The list of choices at the bottom of a screen, with a cursor on one of them, or None.

    Options share the column their labels start in; the cursor (❯ in Claude
    Code, › in Codex) marks one. With ``digits``, a numbered option is chosen
    by its digit (Claude Code takes it at once); otherwise, and for options
    without numbers, by arrow keys from the cursor, then Enter.
    """
    cursor_re = re.compile(rf"^(\s*)([{''.join(cursors)}])\s+(\S.*)$")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    at, found = -1, None
    # The cursor sits in the options block, and under it only more options and
    # a hint line or two ("Enter to confirm · Esc to cancel").
    for i in range(last, max(last - 16, -1), -1):
        found = cursor_re.match(lines[i])
        if found:
            at = i
            break
    if found is None:
        return None
    column = found.start(3)
    numbered = bool(NUMBERED_RE.match(found.group(3)))

    def label_of(i: int) -> str | None:
        line = lines[i]
        if len(line) <= column or line[column].isspace():
            return None
        head = line[:column]
        if head.strip() and not cursor_re.match(line):
            return None
        text = line[column:].strip()
        if numbered != bool(NUMBERED_RE.match(text)):
            return None
        return text

    def description(i: int) -> bool:  # a line under an option, indented deeper
        line = lines[i]
        return bool(line.strip()) and len(line) - len(line.lstrip()) > column and not cursor_re.match(line)

    rows = [at]
    i = at - 1
    while i >= 0 and (label_of(i) is not None or description(i)):
        if label_of(i) is not None:
            rows.insert(0, i)
        i -= 1
    i = at + 1
    while i <= last and (label_of(i) is not None or description(i)):
        if label_of(i) is not None:
            rows.append(i)
        i += 1
    if len(rows) < 2:
        return None
    if sum(1 for line in lines[rows[-1] + 1 : last + 1] if line.strip()) > 3:
        return None  # more than hints below: this list is not the screen's last word
    labels = [label_of(i) or "" for i in rows]
    cursor = rows.index(at)
    numbers = [NUMBERED_RE.match(label).group(1) if numbered else "" for label in labels]  # type: ignore[union-attr]
    by_digit = (digits and numbered and len(rows) <= 9
                and numbers == [str(n) for n in range(1, len(rows) + 1)])
    options = []
    for n, label in enumerate(labels):
        if numbered:
            label = NUMBERED_RE.match(label).group(2).strip()  # type: ignore[union-attr]
        if by_digit:
            keys: tuple[str, ...] = (numbers[n],)
        else:
            step = "Down" if n > cursor else "Up"
            keys = (step,) * abs(n - cursor) + ("Enter",)
        options.append(Option(label, keys))
    question, text = _question(lines, rows[0])
    return Dialog(question, tuple(options), text)


def _question(lines: list[str], first_option: int) -> tuple[str, str]:
    """The asking line(s) above a dialog's options, and the dialog's whole body there."""
    top = first_option
    while top > 0 and first_option - top < 20 and not RULE_RE.match(lines[top - 1]):
        top -= 1
    body = [line.strip() for line in lines[top:first_option]]
    while body and not body[0]:
        body.pop(0)
    while body and not body[-1]:
        body.pop()
    paragraphs: list[list[str]] = [[]]
    for line in body:
        if line and not set(line) <= {"╌", "─", "-", " "}:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    paragraphs = [p for p in paragraphs if p]
    question = ""
    for paragraph in reversed(paragraphs):
        asking = [n for n, line in enumerate(paragraph) if "?" in line]
        if asking:
            question = " ".join(paragraph[asking[-1] :])
            break
    if not question and paragraphs:
        question = " ".join(paragraphs[0])
    text = "\n".join(line for line in body if not (line and set(line) <= {"╌", "─"}))
    return question, text[:2000]


# A notice drawn right-aligned above Claude's box (e.g. tmux's "focus-events off"): not work.
NOTICE_RE = re.compile(r"^\s{20,}\S")


@dataclass(frozen=True)
class Box:
    """The input box: its text, and the screen line where it starts."""

    text: str
    top: int


def rule_box(lines: list[str], prompt_chars: tuple[str, ...]) -> Box | None:
    """Claude Code's box: the prompt line(s) between two full-width rules."""
    rules = [i for i, line in enumerate(lines) if RULE_RE.match(line)]
    for lower, upper in zip(reversed(rules[:-1]), reversed(rules[1:])):
        body = lines[lower + 1 : upper]
        if not body:
            continue
        first = body[0].lstrip()
        for char in prompt_chars:
            if first.startswith(char):
                text = [first[len(char) :].lstrip(" \u00a0")] + [b.strip() for b in body[1:]]
                return Box("\n".join(text).strip(), lower)
    return None


def codex_box(lines: list[str], prompt_chars: tuple[str, ...]) -> Box | None:
    """Codex's box: the last "› " line at the left edge, its continuation, then the status lines.

    Codex draws no rules; its history repeats prompts as "› text" too, but
    those are followed by more history, not by the footer.
    """
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i in range(last, max(last - 12, -1), -1):
        line = lines[i]
        if not any(line.startswith(f"{char} ") or line.rstrip() == char for char in prompt_chars):
            continue
        if find_dialog(lines[: last + 1], prompt_chars) is not None:
            return None  # "› 1. Yes, proceed": a dialog's cursor, not the box
        text = [line[1:].strip()]
        for more in lines[i + 1 : last + 1]:
            if not more.startswith("  ") or not more.strip():
                break
            text.append(more.strip())
        joined = "\n".join(text).strip()
        if joined in CODEX_PLACEHOLDERS:
            joined = ""
        return Box(joined, i)
    return None


@dataclass(frozen=True)
class Provider:
    name: str
    has_hooks: bool
    clear_command: str
    interrupt_key: str
    busy_markers: tuple[str, ...] = ()
    waiting_markers: tuple[str, ...] = ()
    prompt_chars: tuple[str, ...] = ("❯",)
    extra_env: dict[str, str] = field(default_factory=dict)
    # A shell would run "[from x]" as a command, so there the sender line is a comment.
    header_prefix: str = ""
    header_separator: str = " "
    busy_in_footer: bool = False
    # The spinner line drawn just above the input box while the agent works.
    spinner: re.Pattern[str] | None = None
    find_box: Callable[[list[str], tuple[str, ...]], Box | None] = rule_box
    cursor_chars: tuple[str, ...] = ("❯", "›")
    # Whether a numbered dialog takes an option's digit as the whole answer.
    # Claude Code 2.1 does; Codex 0.171 does in some dialogs and only moves
    # the cursor in others (its folder-trust dialog), so there it is arrows + Enter.
    digit_answers: bool = True
    # The flag that continues a conversation by its id (Claude's session id, from
    # its hooks); empty: a resumed session of this provider starts afresh.
    resume_flag: str = ""
    # Whether sm reads its tokens from its own logs (core/usage.py): its figures
    # show as counted, zero before its first turn ends, not "not reported".
    records_usage: bool = False

    def with_header(self, header: str, body: str) -> str:
        return f"{self.header_prefix}{header}{self.header_separator}{body}"

    def content(self, screen: str, lines: int = 40) -> str:
        """What the agent has done, as `sm output` and the phone's Output show it: the
        screen above the input box (no box, no footer, no trailing blank lines), its last
        `lines` lines. A dialog in place of the box is content: it is what waits."""
        rows = screen.splitlines()
        box = self.find_box(rows, self.prompt_chars)
        if box is not None:
            rows = rows[: box.top]
        kept: list[str] = []
        for row in (row.rstrip() for row in rows):
            if row or (kept and kept[-1]):  # runs of blank lines become one: a phone screen is small
                kept.append(row)
        while kept and (not kept[-1] or NOTICE_RE.match(kept[-1])):
            kept.pop()
        return "\n".join(kept[-lines:]) if lines > 0 else ""

    def read_screen(self, screen: str, current_command: str = "") -> ScreenReading:
        lines = screen.splitlines()
        box = self.find_box(lines, self.prompt_chars)
        if box is None:
            # No input box: whatever is on screen instead waits on a person, if
            # it offers choices. Nothing may be typed into it.
            dialog = find_dialog(lines, self.cursor_chars, self.digit_answers)
            lowered = screen.lower()
            if dialog is not None or any(m.lower() in lowered for m in self.waiting_markers):
                return ScreenReading("waiting", "", dialog)
        if self._busy(lines, box):
            return ScreenReading("busy", box.text if box else "")
        if box is None:
            return ScreenReading(None)
        return ScreenReading("idle", box.text)

    def _busy(self, lines: list[str], box: Box | None) -> bool:
        if self.busy_in_footer:
            # Only the footer under the input box counts: the transcript may
            # well quote "esc to interrupt".
            rules = [i for i, line in enumerate(lines) if RULE_RE.match(line)]
            footer = "\n".join(lines[rules[-1] + 1 :]).lower() if rules else ""
        else:
            footer = "\n".join(lines).lower()
        if any(marker.lower() in footer for marker in self.busy_markers):
            return True
        if self.spinner is None or box is None:
            return False
        # The spinner belongs to the current turn: look up from the box to the
        # last submitted prompt or finished-turn line, no further.
        for line in reversed(lines[max(0, box.top - 30) : box.top]):
            if self.spinner.match(line):
                return True
            if TURN_DONE_RE.match(line.strip()) or any(line.startswith(f"{c} ") for c in self.prompt_chars):
                return False
        return False


class ShellProvider(Provider):
    """A plain interactive shell: idle when the shell itself is in the foreground."""

    def content(self, screen: str, lines: int = 40) -> str:
        rows = [row.rstrip() for row in screen.splitlines()]
        while rows and not rows[-1]:
            rows.pop()
        return "\n".join(rows[-lines:]) if lines > 0 else ""

    def read_screen(self, screen: str, current_command: str = "") -> ScreenReading:
        if current_command and current_command not in SHELLS:
            return ScreenReading("busy")
        last = next((line for line in reversed(screen.splitlines()) if line.strip()), "").rstrip()
        for char in self.prompt_chars:
            if last.endswith(char):
                return ScreenReading("idle", "")
            if f"{char} " in last:
                return ScreenReading("idle", last.split(f"{char} ", 1)[1].strip())
        return ScreenReading("idle" if current_command else None, "")


CLAUDE = Provider(
    name="claude",
    has_hooks=True,
    clear_command="/clear",
    interrupt_key="Escape",
    busy_markers=("esc to interrupt",),
    busy_in_footer=True,
    spinner=CLAUDE_SPINNER_RE,
    resume_flag="--resume",
    records_usage=True,
    # Permission dialogs, and the start-up dialogs that swallow a first prompt.
    waiting_markers=(
        "Do you want to proceed?",
        "Do you want to make this edit",
        "Do you want to create",
        "Esc to cancel · Tab to amend",
        "Enter to confirm · Esc to cancel",
    ),
)

CODEX = Provider(
    name="codex",
    has_hooks=False,
    clear_command="/new",
    interrupt_key="Escape",
    # Seen in Codex 0.171.0 (tests/panes/codex-*): "• Working (2s • esc to
    # interrupt)" above the box while it works, even with text typed in the box.
    spinner=CODEX_SPINNER_RE,
    waiting_markers=("Would you like to run the following command?",
                     "Would you like to make the following edits?"),
    prompt_chars=("›",),
    find_box=codex_box,
    digit_answers=False,
    records_usage=True,
)

GEMINI = Provider(
    name="gemini",
    has_hooks=False,
    clear_command="/clear",
    interrupt_key="Escape",
    busy_markers=("esc to cancel",),
    waiting_markers=("Allow execution", "Apply this change?"),
    prompt_chars=(">",),
)

SHELL = ShellProvider(
    name="shell",
    has_hooks=False,
    clear_command="clear",
    interrupt_key="C-c",
    prompt_chars=("$", "#", "%"),
    header_prefix="# ",
    header_separator="\n",
)

PROVIDERS: dict[str, Provider] = {p.name: p for p in (CLAUDE, CODEX, GEMINI, SHELL)}
assert tuple(PROVIDERS) == PROVIDER_NAMES, "core.types.PROVIDER_NAMES names every provider, in order"


def get_provider(name: str) -> Provider:
    from core.errors import Invalid

    try:
        return PROVIDERS[name]
    except KeyError:
        raise Invalid(
            f"unknown provider {name!r}; choose one of: {', '.join(sorted(PROVIDERS))}"
        ) from None
