"""The `sm` console script.

`sm hook <Event>` runs on every Claude Code tool call, so it is dispatched
before click is imported (click costs ~25 ms to import); everything else goes
through the click command group in cli.main.
"""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "hook" and "--help" not in sys.argv:
        from hooks.entry import main as hook_main

        sys.exit(hook_main(sys.argv[2:]))
    from cli.main import main as cli_main

    cli_main()
