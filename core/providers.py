"""What sm knows about each kind of agent: how to launch it, clear it, and read its screen.

A provider's screen reading is the fallback to hooks: it yields the state a
screen shows and the text a person may have left in the input box. The
markers come from real captures kept in tests/panes/ (see its README).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RULE_RE = re.compile(r"^\s*─{8,}")
OPTION_RE = re.compile(r"^\s*(?:❯\s*)?(\d)[.)]\s+(\S.*)$")


def dialog_options(screen: str) -> list[tuple[str, str]]:
    """The numbered options of a dialog at the bottom of a screen: [(digit, label)]."""
    options: list[tuple[str, str]] = []
    for line in [ln for ln in screen.splitlines() if ln.strip()][-25:]:
        found = OPTION_RE.match(line)
        if found:
            digit, label = found.group(1), found.group(2).strip()
            if options and digit == "1":
                options = []  # a later dialog replaces an earlier list
            options.append((digit, label[:60]))
    return options
SHELLS = frozenset({"bash", "zsh", "sh", "dash", "fish", "ksh"})


@dataclass(frozen=True)
class ScreenReading:
    state: str | None  # "idle" | "busy" | "waiting" | None (can't tell: starting, or unknown)
    input_text: str = ""  # what sits in the input box, unsubmitted


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

    def with_header(self, header: str, body: str) -> str:
        return f"{self.header_prefix}{header}{self.header_separator}{body}"

    def read_screen(self, screen: str, current_command: str = "") -> ScreenReading:
        lines = screen.splitlines()
        lowered = screen.lower()
        if any(marker.lower() in lowered for marker in self.waiting_markers):
            return ScreenReading("waiting")
        if self.busy_in_footer:
            # Only the footer under the input box counts: the transcript may
            # well quote "esc to interrupt".
            rules = [i for i, line in enumerate(lines) if RULE_RE.match(line)]
            lowered = "\n".join(lines[rules[-1] + 1 :]).lower() if rules else ""
        busy = any(marker.lower() in lowered for marker in self.busy_markers)
        box = _input_box(lines, self.prompt_chars)
        if busy:
            return ScreenReading("busy", box or "")
        if box is None:
            return ScreenReading(None)
        return ScreenReading("idle", box)


def _input_box(lines: list[str], prompt_chars: tuple[str, ...]) -> str | None:
    """Text in the last input box: the prompt line(s) between two rules, or None."""
    rules = [i for i, line in enumerate(lines) if RULE_RE.match(line)]
    for lower, upper in zip(reversed(rules[:-1]), reversed(rules[1:])):
        body = lines[lower + 1 : upper]
        if not body:
            continue
        first = body[0].lstrip()
        for char in prompt_chars:
            if first.startswith(char):
                text = [first[len(char) :].lstrip(" \u00a0")] + [b.strip() for b in body[1:]]
                return "\n".join(text).strip()
    return None


class ShellProvider(Provider):
    """A plain interactive shell: idle when the shell itself is in the foreground."""

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
    busy_markers=("esc to interrupt",),
    waiting_markers=("Allow command?", "Would you like to run the following command?"),
    prompt_chars=("›", "▌"),
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


def get_provider(name: str) -> Provider:
    from core.errors import Invalid

    try:
        return PROVIDERS[name]
    except KeyError:
        raise Invalid(
            f"unknown provider {name!r}; choose one of: {', '.join(sorted(PROVIDERS))}"
        ) from None
