"""The screen reader on real captured screens (tests/panes/*.{idle,busy,waiting}.txt).

Each file is named for the state the reader must yield. When an agent's UI
changes, add a capture; nothing else should need to move.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.providers import Option, dialog_options, get_provider

PANES = Path(__file__).parent / "panes"
FILES = sorted(PANES.glob("*.*.txt"))

# The shell reader's truth is the pane's foreground process, which tmux
# reported when each shell screen was captured.
SHELL_FOREGROUND = {"shell-prompt.idle.txt": "bash", "shell-running.busy.txt": "sleep"}


def test_corpus_covers_every_state_of_claude_codex_and_shell() -> None:
    seen = {(f.name.split("-")[0], f.name.split(".")[-2]) for f in FILES}
    for provider, state in [("claude", "idle"), ("claude", "busy"), ("claude", "waiting"),
                            ("codex", "idle"), ("codex", "busy"), ("codex", "waiting"),
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


def read(name: str):
    return get_provider(name.split("-")[0]).read_screen((PANES / name).read_text())


# Each dialog's question, and every option with the keys that choose it. The
# capture script (tests/panes/capture_panes.py) answers the nudges, the Codex
# approval and the Codex trust dialog with exactly these keys on the real CLIs.
DIALOGS = {
    "claude-auto-mode-nudge.waiting.txt": ("Make auto mode your default permission mode?", [
        Option("Yes, set auto mode as my default permission mode", ("Enter",)),
        Option("No, keep manual mode", ("Down", "Enter")),
    ]),
    "claude-trust-dialog.waiting.txt": ("Quick safety check: Is this a project you created or one you trust?", [
        Option("No, exit", ("Enter",)),
        Option("Yes, I trust this folder", ("Down", "Enter")),
    ]),
    "claude-api-key-prompt.waiting.txt": ("Do you want to use this API key?", [
        Option("Yes", ("Up", "Enter")),  # the cursor starts on "No (recommended)"
        Option("No (recommended)", ("Enter",)),
    ]),
    "claude-bash-permission.waiting.txt": ("Do you want to proceed?", [
        Option("Yes", ("1",)),
        Option("Yes, and always allow access to /tmp/sm-panes-gndosyu_/work-ask from this project", ("2",)),
        Option("Yes, and switch to auto mode · auto mode handles these prompts for you", ("3",)),
        Option("No", ("4",)),
    ]),
    # Codex 0.171 takes a digit as the answer in some dialogs and only moves
    # the cursor in others: its options are chosen with arrows and Enter.
    "codex-approval.waiting.txt": ("Would you like to run the following command?", [
        Option("Yes, proceed (y)", ("Enter",)),
        Option("Yes, and don't ask again for commands that start with `touch approved-by-codex.txt` (p)",
               ("Down", "Enter")),
        Option("No, and tell Codex what to do differently (esc)", ("Down", "Down", "Enter")),
    ]),
    "codex-model-nudge.waiting.txt": ("Meet GPT-6 Sol", [
        Option("Try new model", ("Enter",)),
        Option("Use existing model", ("Down", "Enter")),
    ]),
    "codex-trust-dialog.waiting.txt": ("Trust this folder?", [
        Option("Trust and continue", ("Enter",)),
        Option("Back to Agent Command Center", ("Down", "Enter")),
    ]),
}


def test_every_waiting_capture_has_its_dialog_listed() -> None:
    waiting = {f.name for f in FILES if f.name.endswith(".waiting.txt")}
    assert waiting == set(DIALOGS)


@pytest.mark.parametrize("name", sorted(DIALOGS))
def test_dialog_question_options_and_keys(name: str) -> None:
    question, options = DIALOGS[name]
    reading = read(name)
    assert reading.state == "waiting"
    assert reading.input_text == ""
    assert reading.dialog is not None
    assert reading.dialog.question.startswith(question)
    assert list(reading.dialog.options) == options


def test_dialog_text_carries_what_is_asked_about() -> None:
    assert "touch made-by-claude.txt" in read("claude-bash-permission.waiting.txt").dialog.text
    assert "$ touch approved-by-codex.txt" in read("codex-approval.waiting.txt").dialog.text
    assert "ANTHROPIC_API_KEY: sk-ant-" in read("claude-api-key-prompt.waiting.txt").dialog.text


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_only_waiting_screens_carry_a_dialog(path: Path) -> None:
    reading = get_provider(path.name.split("-")[0]).read_screen(path.read_text(), SHELL_FOREGROUND.get(path.name, ""))
    assert (reading.dialog is not None) == (reading.state == "waiting")


def test_dialog_options_keeps_its_shape_for_the_bot() -> None:
    screen = (PANES / "claude-bash-permission.waiting.txt").read_text()
    assert dialog_options(screen)[0] == ("1", "Yes")
    assert dialog_options(screen)[-1] == ("4", "No")
    nudge = (PANES / "claude-auto-mode-nudge.waiting.txt").read_text()
    assert dialog_options(nudge) == [("Enter", "Yes, set auto mode as my default permission mode"),
                                     ("Down Enter", "No, keep manual mode")]
    approval = (PANES / "codex-approval.waiting.txt").read_text()
    assert dialog_options(approval, get_provider("codex"))[0] == ("Enter", "Yes, proceed (y)")


def test_typing_into_a_busy_claude_does_not_make_it_idle() -> None:
    screen = (PANES / "claude-typed-while-busy.busy.txt").read_text()
    lines = screen.splitlines()
    footer = lines[[i for i, line in enumerate(lines) if line.startswith("────")][-1] + 1 :]
    assert "esc to interrupt" not in "\n".join(footer)  # the trap: only the spinner line says busy
    reading = get_provider("claude").read_screen(screen)
    assert (reading.state, reading.input_text) == ("busy", "typed while it works")


def test_spinner_with_timer_and_tokens_is_busy_without_the_footer() -> None:
    screen = (PANES / "claude-typed-while-busy.busy.txt").read_text()
    spinner = next(line for line in screen.splitlines() if line.endswith("…"))
    for shown in (spinner, spinner + " (12s · ↓ 340 tokens)", "* Accomplishing… (1s · ↓ 10 tokens)"):
        assert get_provider("claude").read_screen(screen.replace(spinner, shown)).state == "busy"


@pytest.mark.parametrize("name", ["claude-after-turn.idle.txt", "claude-multiline-paste.idle.txt"])
def test_finished_turn_summary_is_not_a_spinner(name: str) -> None:
    screen = (PANES / name).read_text()
    assert "✻ " in screen and " for " in screen  # "✻ Cogitated for 0s · done ..."
    assert get_provider("claude").read_screen(screen).state == "idle"


def test_reply_ending_in_an_ellipsis_is_not_a_spinner() -> None:
    screen = (PANES / "claude-after-turn.idle.txt").read_text()
    assert get_provider("claude").read_screen(screen.replace("● ok:", "● Thinking… ok:", 1)).state == "idle"


def test_typing_into_a_busy_codex_does_not_make_it_idle() -> None:
    reading = read("codex-typed-while-busy.busy.txt")
    assert (reading.state, reading.input_text) == ("busy", "typed while it works")


def test_codex_placeholder_is_an_empty_box() -> None:
    for name in ("codex-startup-ready.idle.txt", "codex-after-turn.idle.txt"):
        assert "› Ask Codex to do anything" in (PANES / name).read_text()
        assert read(name).input_text == ""
    assert read("codex-typed-input.idle.txt").input_text == "hello codex, this is typed but not sent"


def test_numbered_list_in_a_reply_is_not_a_dialog() -> None:
    screen = (PANES / "codex-after-turn.idle.txt").read_text()
    reply = "• ok: hello codex, this is typed but not sent"
    assert reply in screen
    listed = screen.replace(reply, "• Two ways:\n› 1. this\n  2. that", 1)
    assert read_text("codex", listed).state == "idle"


def read_text(provider: str, screen: str):
    return get_provider(provider).read_screen(screen)
