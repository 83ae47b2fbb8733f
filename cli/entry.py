"""The `sm` console script.

Agents run `sm` constantly, and importing click costs ~25 ms here, more than
everything else `sm status` does. So the hottest calls are dispatched before
click is imported:

* `sm hook <Event>` and `sm auto-lock` (every Claude Code tool call), and
* `sm status [--all] [--json]` and `sm children [--json]` in exactly those forms.

They run the same functions the click commands call (cli/common.py). Any
other form, `--help` included, goes through click in cli/main.py.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if len(args) >= 1 and args[0] == "hook" and "--help" not in args and "-h" not in args:
        from hooks.entry import main as hook_main

        sys.exit(hook_main(args[1:]))
    if args == ["auto-lock"]:
        from hooks.entry import auto_lock

        sys.exit(auto_lock())
    if args in (["children"], ["children", "--json"]):
        from cli import common

        common.children(len(args) == 2)
        return
    if args[:1] == ["status"] and len(set(args[1:])) == len(args[1:]) and set(args[1:]) <= {"--json", "--all"}:
        from cli import common

        common.status("--json" in args, "--all" in args)
        return
    from cli.main import main as cli_main

    cli_main()
