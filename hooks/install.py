"""`sm hooks install [dir]`: sm's hooks in a project's .claude/settings.json.

For Claude sessions sm did not start. The hooks do nothing there unless the
session is one sm knows (no SM_TOKEN, no effect), so installing them is safe.
Existing settings are kept: sm's entries are added beside whatever hooks
are already configured, never replacing them, and never twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hooks import cli_command, settings_for


def sm_hooks(sm: str) -> dict[str, list[dict[str, Any]]]:
    return settings_for(sm)["hooks"]


def _commands(entries: list[dict[str, Any]]) -> set[str]:
    return {h.get("command", "") for e in entries for h in e.get("hooks", [])}


def install(directory: str) -> tuple[Path, int]:
    path = Path(directory).expanduser().resolve() / ".claude" / "settings.json"
    settings: dict[str, Any] = {}
    if path.exists():
        try:
            settings = json.loads(path.read_text() or "{}")
        except ValueError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); fix it first") from None
        if not isinstance(settings, dict):
            raise ValueError(f"{path} does not hold a JSON object")
    hooks = settings.setdefault("hooks", {})
    added = 0
    for event, entries in sm_hooks(cli_command()).items():
        existing = hooks.setdefault(event, [])
        have = _commands(existing)
        for entry in entries:
            if not _commands([entry]) <= have:
                existing.append(entry)
                added += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path, added
