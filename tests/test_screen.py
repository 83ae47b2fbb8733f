"""The screen reader on real captured screens (tests/panes/*.{idle,busy,waiting}.txt).

Each file is named for the state the reader must yield. When an agent's UI
changes, add a capture; nothing else should need to move.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.providers import get_provider

PANES = Path(__file__).parent / "panes"
FILES = sorted(PANES.glob("*.*.txt"))

# The shell reader's truth is the pane's foreground process, which tmux
# reported when each shell screen was captured.
SHELL_FOREGROUND = {"shell-prompt.idle.txt": "bash", "shell-running.busy.txt": "sleep"}


def test_corpus_covers_every_state_of_claude_and_shell() -> None:
    seen = {(f.name.split("-")[0], f.name.split(".")[-2]) for f in FILES}
    for provider, state in [("claude", "idle"), ("claude", "busy"), ("claude", "waiting"),
                            ("shell", "idle"), ("shell", "busy")]:
        assert (provider, state) in seen, f"no {provider} screen captured in state {state}"


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_screen_yields_the_state_in_its_name(path: Path) -> None:
    provider = get_provider(path.name.split("-")[0])
    expected = path.name.split(".")[-2]
    reading = provider.read_screen(path.read_text(), SHELL_FOREGROUND.get(path.name, ""))
    assert reading.state == expected


def test_text_left_in_claude_input_box_is_seen() -> None:
    reading = get_provider("claude").read_screen((PANES / "claude-typed-input.idle.txt").read_text())
    assert reading.state == "idle"
    assert reading.input_text  # a person's unsent text: the deliverer must not type over it


def test_pending_paste_counts_as_input() -> None:
    reading = get_provider("claude").read_screen((PANES / "claude-multiline-paste.idle.txt").read_text())
    assert "Pasted text" in reading.input_text


@pytest.mark.parametrize("name", ["claude-startup-ready.idle.txt", "claude-after-turn.idle.txt"])
def test_empty_claude_input_box_reads_empty(name: str) -> None:
    assert get_provider("claude").read_screen((PANES / name).read_text()).input_text == ""


def test_busy_marker_quoted_in_transcript_is_not_busy() -> None:
    screen = (PANES / "claude-after-turn.idle.txt").read_text()
    quoted = screen.replace("● ok:", "● press esc to interrupt me ok:", 1)
    assert "esc to interrupt" in quoted
    assert get_provider("claude").read_screen(quoted).state == "idle"
