"""A dialog's options show in `sm status` and `sm what`, with the keys that choose each one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from conftest import Server

PANES = Path(__file__).parent / "panes"


def test_dialog_options_show_in_status_and_what(server_factory: Callable[..., Server]) -> None:
    # An agent without hooks whose screen is the real Codex trust dialog (captured).
    capture = PANES / "codex-trust-dialog.waiting.txt"
    server = server_factory(SM_CODEX_COMMAND=f"{sys.executable} -c \"import sys,time; "
                            f"sys.stdout.write(open('{capture}').read()); sys.stdout.flush(); time.sleep(600)\"")
    server.ok("spawn", "", "--provider", "codex", "--name", "asker")
    s = server.wait_state("asker", "waiting", 20)
    assert s["state_kind"] == "dialog"
    options = server.session("asker")["options"]
    assert len(options) >= 2 and all(keys and label for keys, label in options)
    text = server.ok("status")
    assert "asker waits for an answer:" in text
    for keys, label in options:
        assert f"{label}  [{keys}]" in text
    what = server.ok("what", "asker")
    assert "options:" in what and all(label in what for _, label in options)
    assert server.json("what", "asker")["options"] == options
