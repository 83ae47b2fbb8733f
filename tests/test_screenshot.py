"""The pane as a picture: every non-blank cell of a real capture is drawn, colours and cursor too."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bot.telegram.screenshot import BACKGROUND, render

PANES = sorted((Path(__file__).parent / "panes").glob("*.txt"))


@pytest.mark.parametrize("capture", PANES, ids=[p.name for p in PANES])
def test_every_non_blank_cell_of_a_real_capture_is_drawn(capture: Path) -> None:
    text = capture.read_text()
    lines = text.split("\n")
    cols = max(80, max(len(line) for line in lines))
    rows = max(24, len(lines))
    shot = render(text, cols, rows)
    expected = sum(1 for line in lines[-rows:] for ch in line if not ch.isspace())
    assert shot.cells_drawn == expected
    image = Image.open(io.BytesIO(shot.png))
    assert image.format == "PNG" and image.size == (shot.width, shot.height)
    if expected:
        assert image.getextrema() != ((BACKGROUND[0],) * 2, (BACKGROUND[1],) * 2, (BACKGROUND[2],) * 2)


def test_colours_reverse_video_and_the_cursor_are_drawn() -> None:
    ansi = "\x1b[41m  red  \x1b[0m plain \x1b[7m inverse \x1b[0m\n\x1b[1;32mbold green\x1b[0m"
    shot = render(ansi, 40, 4, cursor=(0, 3))
    image = Image.open(io.BytesIO(shot.png)).convert("RGB")
    colours = {c for _n, c in image.getcolors(1 << 20)}
    assert (224, 108, 117) in colours  # the red background
    assert any(g > 150 and r < 200 and b < 150 for r, g, b in colours)  # green text
    assert shot.cells_drawn == len("red") + len("plain") + len("inverse") + len("boldgreen")
    blank = render("", 40, 4)
    with_cursor = render("", 40, 4, cursor=(0, 3))
    assert blank.png != with_cursor.png
