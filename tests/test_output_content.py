"""`sm output` (and the phone's Output) on real captured screens: the work, not the chrome."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.providers import RULE_RE, get_provider

PANES = Path(__file__).parent / "panes"
TUI = sorted(p for p in PANES.glob("*.*.txt") if p.name.startswith(("claude-", "codex-")))
# (Codex's "• Working (3s • esc to interrupt)" above its box is kept: it says what the agent is doing.)
FOOTERS = ("? for shortcuts", "manual mode on", "for agents", "Ask Codex to do anything",
           "focus-events off")


def content(name: str, lines: int = 40) -> str:
    return get_provider(name.split("-")[0]).content((PANES / name).read_text(), lines)


@pytest.mark.parametrize("path", TUI, ids=[p.name for p in TUI])
def test_output_drops_the_input_box_the_footer_and_trailing_blanks(path: Path) -> None:
    out = content(path.name)
    rows = out.splitlines()
    assert rows and rows[-1].strip(), "ends on content"
    if ".waiting." not in path.name:  # a dialog is the content: it is what waits
        assert not any(marker in out for marker in FOOTERS)
        assert not (rows and RULE_RE.match(rows[-1]))


@pytest.mark.parametrize("name, last", [
    ("claude-after-turn.idle.txt", "✻ "),
    ("claude-tool-running.busy.txt", "Tip: Use Plan Mode"),
    ("codex-after-turn.idle.txt", "Worked for"),
])
def test_output_shows_the_work(name: str, last: str) -> None:
    rows = content(name).splitlines()
    assert last in rows[-1]
    assert any(row.startswith(("●", "•")) for row in rows)  # the agent's answers are there
    assert not any(not a and not b for a, b in zip(rows, rows[1:]))  # no runs of blank lines


def test_output_keeps_the_last_n_lines_of_content() -> None:
    out = content("claude-tool-running.busy.txt", 3).splitlines()
    assert len(out) == 3 and "Moonwalking" in out[1] and "Tip" in out[2]


def test_a_dialog_is_shown_whole() -> None:
    out = content("claude-bash-permission.waiting.txt")
    assert "Do you want to proceed?" in out
