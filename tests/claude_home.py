"""A private HOME in which the real Claude Code CLI starts without first-run screens.

See /work/shared/FIELD-NOTES.md ("Claude Code, offline").  Use with
``tests/fake_anthropic.py``::

    env = make_claude_home(tmp / "home", workdir, fake.url, allow_bash=True)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CLAUDE_BIN = REPO_ROOT / ".cache" / "claude" / "node_modules" / ".bin" / "claude"
CLAUDE_VERSION = "2.1.330"

DEFAULT_API_KEY = "sk-ant-api03-fake-key-for-tests-0123456789abcdefghij"


def claude_available() -> bool:
    return CLAUDE_BIN.exists() and os.access(CLAUDE_BIN, os.X_OK)


def require_claude() -> None:
    """Call at the start of a test that drives the real CLI.

    Under CI (where ./scripts/test installs the CLI) a missing binary fails the
    test: it must never pass as skipped. On a developer's machine without npm
    it skips, saying why and how to get it.
    """
    import pytest

    if claude_available():
        return
    message = f"Claude Code {CLAUDE_VERSION} is not installed at {CLAUDE_BIN}; ./scripts/test installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def make_claude_home(
    root: Path,
    workdir: Path,
    api_key: str = DEFAULT_API_KEY,
    allow_bash: bool = False,
    base_url: str | None = None,
    seen_nudges: bool = True,
    trust: tuple[Path, ...] = (),
) -> dict[str, str]:
    """Create ``root`` as HOME for the CLI and return the env vars to run it with.

    ``ANTHROPIC_BASE_URL`` is included only when ``base_url`` is given (the
    fake server's URL is usually known only later; add it yourself then).
    ``seen_nudges=False`` leaves the home as fresh as a new user's on the
    first-run nudge (tests/test_real_claude_fresh_home.py).
    ``trust``: more directories trusted as a user who once started Claude Code
    there and said yes (2.1.330 asks again, at every start, about an untrusted
    ``--add-dir``: "Adding a new directory ... No, exit / Yes, add it").
    """
    root = Path(root)
    workdir = Path(workdir).resolve()
    (root / ".claude").mkdir(parents=True, exist_ok=True)
    state = {
        "hasCompletedOnboarding": True,
        "lastOnboardingVersion": CLAUDE_VERSION,
        # Claude Code remembers an approved ANTHROPIC_API_KEY by its last 20 chars.
        "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
        "hasSeenAutoDefaultNudge": True,
        "bypassPermissionsModeAccepted": False,
        "autoUpdates": False,
        "projects": {
            str(workdir): {
                "hasTrustDialogAccepted": True,
                "hasCompletedProjectOnboarding": True,
                "projectOnboardingSeenCount": 1,
                "allowedTools": [],
            }
        },
    }
    for path in trust:
        state["projects"][str(Path(path).resolve())] = {"hasTrustDialogAccepted": True}  # type: ignore[index]
    if not seen_nudges:
        # As a new user's home is: the first interactive start asks about auto mode.
        del state["hasSeenAutoDefaultNudge"]
    (root / ".claude.json").write_text(json.dumps(state, indent=2))
    permissions: dict[str, object] = {"defaultMode": "default"}
    if allow_bash:
        permissions = {"allow": ["Bash(*)"], "defaultMode": "default"}
    (root / ".claude" / "settings.json").write_text(json.dumps({"permissions": permissions}, indent=2))

    env = {
        "HOME": str(root),
        "ANTHROPIC_API_KEY": api_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if base_url:
        env["ANTHROPIC_BASE_URL"] = base_url
    return env
