"""Shell completion of session names and ids, and `sm attach` from inside tmux.

Completion is click's own (`_SM_COMPLETE=bash_source sm`, see the README);
a SESSION argument completes from the live sessions the server lists.
"""

from __future__ import annotations

import shlex
import subprocess

import click
from click.shell_completion import CompletionItem


class SessionRef(click.ParamType):
    """A session, by id or name."""

    name = "session"

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        from cli.client import Client

        try:
            sessions = Client(timeout=2).request("GET", "/sessions")
        except Exception:  # no server, no completions: never a traceback in the shell
            return []
        items = []
        for s in sessions if isinstance(sessions, list) else []:
            for value, other in ((s.get("name", ""), s.get("id", "")), (s.get("id", ""), s.get("name", ""))):
                if value and value.startswith(incomplete):
                    items.append(CompletionItem(value, help=f"{other}, {s.get('state', '')}"))
        return items


SESSION = SessionRef()


def attach_from_tmux(name: str, command: list[str]) -> str:
    """Inside tmux, `switch-client` cannot reach sm's own tmux server: open a new window of
    this tmux that attaches to it (TMUX unset there, so tmux allows the nesting)."""
    inner = "env -u TMUX " + " ".join(shlex.quote(part) for part in command)
    result = subprocess.run(["tmux", "new-window", "-n", name[:30], inner], capture_output=True, text=True)
    if result.returncode == 0:
        return f"opened {name} in a new tmux window (detach from it with your prefix, then d)"
    return (f"you are inside tmux, and a new window could not be opened ({result.stderr.strip()}); "
            f"from a terminal outside tmux run: {' '.join(shlex.quote(p) for p in command)}")
