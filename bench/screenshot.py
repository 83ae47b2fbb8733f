"""The screen as an image: drawing a 200×50 Claude pane (bot/telegram/screenshot.py).

A real capture (tests/panes/claude-tool-running.busy.txt), coloured the way
`tmux capture-pane -e` gives it (bold answers, a dim footer, a coloured
spinner), drawn 30 times: render time p50 / p99 and the PNG's size, which
must stay far under Telegram's 10 MB for photos.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import ROOT, install_guards, print_table, record, row, stats_ms  # noqa: E402

from bot.telegram.screenshot import render  # noqa: E402

RUNS = 30


def coloured(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith("●"):
            line = f"\x1b[1m{line}\x1b[0m"
        elif line.startswith(("✢", "✻")):
            line = f"\x1b[38;5;174m{line}\x1b[0m"
        elif line.startswith("  ⏸") or line.startswith("  ⎿"):
            line = f"\x1b[2m{line}\x1b[0m"
        out.append(line)
    return "\n".join(out)


def main() -> None:
    install_guards(120)
    ansi = coloured((ROOT / "tests" / "panes" / "claude-tool-running.busy.txt").read_text())
    times, size = [], 0
    for _ in range(RUNS):
        started = time.perf_counter()
        shot = render(ansi, 200, 50, (2, 47))
        times.append(time.perf_counter() - started)
        size = len(shot.png)
    lat = stats_ms(times)
    print_table("Screenshot of a 200×50 Claude pane", [
        {"what": "render p50 / p99", "value": f"{lat['p50']} / {lat['p99']} ms (n={lat['n']})"},
        {"what": "PNG", "value": f"{size / 1024:.0f} KB, {shot.width}×{shot.height} px, {shot.cells_drawn} cells"},
    ], ["what", "value"])
    record("screenshot", {"render_ms": lat, "png_bytes": size, "width": shot.width, "height": shot.height}, [
        row("Screenshot of a 200×50 Claude pane: render p50", "≤ 150 ms", f"{lat['p50']:.0f} ms (p99 {lat['p99']:.0f})",
            lat["p50"] <= 150),
        row("Screenshot PNG size", "≤ 10 MB (Telegram)", f"{size / 1024:.0f} KB", size < 10 * 1024 * 1024),
    ])


if __name__ == "__main__":
    main()
