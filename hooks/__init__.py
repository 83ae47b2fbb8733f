"""Claude Code hooks: the entry point (`sm hook <event>`), the settings template,
and how an agent runs the `sm` CLI.

The engine does not know this package's layout: sm-bot asks it for the two
things an agent is launched with (`cli_command()` and `settings_for()`) and
hands them to the engine. Kept import-light: every hook event imports this.
"""

from __future__ import annotations

from typing import Any


def cli_command() -> str:
    """How an agent (or its hooks) runs the `sm` CLI: an absolute path."""
    import shlex
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).with_name("sm")
    if beside.exists():
        return str(beside)
    found = shutil.which("sm")
    return found or f"{shlex.quote(sys.executable)} -m cli.main"


def settings_for(sm: str) -> dict[str, Any]:
    """Claude Code settings (for `--settings`, or a project's settings.json) that run sm's hooks with `sm`."""
    import json
    from importlib import resources

    template = resources.files(__name__).joinpath("settings.json").read_text()
    return json.loads(template.replace("{sm}", sm))
