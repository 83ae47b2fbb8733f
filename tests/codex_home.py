"""A private CODEX_HOME in which the real Codex CLI starts without first-run screens.

Use with ``tests/fake_openai.py``::

    env = make_codex_home(tmp / "codex-home", workdir, fake.url)

Codex 0.171.0 reads ``$CODEX_HOME/config.toml``.  What each entry skips or
sets (each was seen on this machine; without it the named screen shows):

- a ``model_providers`` entry with ``wire_api = "responses"`` and an
  ``env_key``: Codex talks to the scripted Responses API with that key, and
  never shows its sign-in screen;
- ``[projects."<workdir>"] trust_level = "trusted"``: no "Do you trust the
  contents of this directory?" dialog;
- ``[notice.model_migrations]`` and ``[tui.model_availability_nux]``: no
  "Meet GPT-6 Sol / Try new model" dialog (Codex writes these itself once
  the person answers it);
- ``features.daemon_auto_start = false``: Codex does not start its shared
  background app-server, which would outlive the pane (and the test).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CODEX_BIN = REPO_ROOT / ".cache" / "codex" / "node_modules" / ".bin" / "codex"
CODEX_VERSION = "0.171.0"
CODEX_MODEL = "gpt-5.5"

DEFAULT_API_KEY = "sk-fake-openai-key-for-tests"


def codex_available() -> bool:
    return CODEX_BIN.exists() and os.access(CODEX_BIN, os.X_OK)


def require_codex() -> None:
    """Call at the start of a test that drives the real CLI (as claude_home.require_claude)."""
    import pytest

    if codex_available():
        return
    message = f"Codex {CODEX_VERSION} is not installed at {CODEX_BIN}; ./scripts/test installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def make_codex_home(
    root: Path,
    workdir: Path | None,
    base_url: str,
    api_key: str = DEFAULT_API_KEY,
    model_nudge: bool = False,
) -> dict[str, str]:
    """Create ``root`` as CODEX_HOME and return the env vars to run Codex with.

    ``workdir=None`` leaves every folder untrusted (the trust dialog shows);
    ``model_nudge=True`` keeps the new-model dialog.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        f'model = "{CODEX_MODEL}"',
        'model_provider = "scripted"',
        "check_for_update_on_startup = false",
        "",
        "[model_providers.scripted]",
        'name = "scripted"',
        f'base_url = "{base_url.rstrip("/")}/v1"',
        'env_key = "CODEX_TEST_API_KEY"',
        'wire_api = "responses"',
        "",
        "[features]",
        "daemon_auto_start = false",
        "",
        "[tui]",
        "screen_reader_detection_done = true",
    ]
    if not model_nudge:
        lines += [
            "",
            "[tui.model_availability_nux]",
            '"gpt-6.1-sol" = 1',
            "",
            "[notice.model_migrations]",
            f'"{CODEX_MODEL}" = "gpt-6-sol"',
        ]
    if workdir is not None:
        lines += ["", f'[projects."{Path(workdir).resolve()}"]', 'trust_level = "trusted"']
    (root / "config.toml").write_text("\n".join(lines) + "\n")
    # Not SM_*: sm keeps variables named SM_*KEY* from its agents (core/environment.py).
    return {
        "CODEX_HOME": str(root),
        "CODEX_TEST_API_KEY": api_key,
    }
