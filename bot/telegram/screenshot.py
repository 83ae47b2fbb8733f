"""A pane as a picture: tmux's capture with escapes, read by a terminal
emulator (pyte), drawn with Pillow in a monospace font, cursor included.

A phone shows a PNG of a 200-column screen far better than 200-column text,
which Telegram wraps into noise. The font must carry box-drawing and block
glyphs (Claude's logo and borders): DejaVu Sans Mono does, and is found in
the usual system places or at `SM_SCREENSHOT_FONT`; without any, Pillow's
own default font is used and borders may draw as boxes.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from functools import lru_cache

import pyte
from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",
    "/usr/share/fonts/dejavu/DejaVuSansMono.ttf",
    "/Library/Fonts/DejaVuSansMono.ttf",
    "/System/Library/Fonts/Menlo.ttc",
)
BOLD_SUFFIX = ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf")

BACKGROUND = (24, 24, 27)
FOREGROUND = (228, 228, 231)
CURSOR = (180, 180, 190)
# The 16 ANSI colours, as a dark terminal theme draws them.
NAMED = {
    "black": (40, 42, 46), "red": (224, 108, 117), "green": (152, 195, 121), "brown": (229, 192, 123),
    "yellow": (229, 192, 123), "blue": (97, 175, 239), "magenta": (198, 120, 221), "cyan": (86, 182, 194),
    "white": (220, 223, 228), "brightblack": (92, 99, 112), "brightred": (240, 128, 138),
    "brightgreen": (170, 215, 140), "brightyellow": (240, 210, 140), "brightblue": (120, 190, 250),
    "brightmagenta": (215, 140, 235), "brightcyan": (110, 200, 210), "brightwhite": (250, 250, 252),
}


@dataclass(frozen=True)
class Shot:
    png: bytes
    width: int
    height: int
    cells_drawn: int  # non-blank cells drawn: the test's check that nothing was lost


def _colour(name: str, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if name == "default":
        return default
    if name in NAMED:
        return NAMED[name]
    if len(name) == 6:
        try:
            return (int(name[0:2], 16), int(name[2:4], 16), int(name[4:6], 16))
        except ValueError:
            pass
    return default


@lru_cache(maxsize=4)
def _fonts(size: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, ImageFont.FreeTypeFont | ImageFont.ImageFont]:
    paths = [os.environ.get("SM_SCREENSHOT_FONT", "")] + list(FONT_CANDIDATES)
    for path in paths:
        if path and os.path.exists(path):
            regular = ImageFont.truetype(path, size)
            bold_path = path.replace(*BOLD_SUFFIX)
            bold = ImageFont.truetype(bold_path, size) if os.path.exists(bold_path) else regular
            return regular, bold
    default = ImageFont.load_default(size)
    return default, default


def emulate(ansi: str, cols: int, rows: int) -> pyte.Screen:
    """The screen a terminal of that size shows after `capture-pane -e -p` output."""
    screen = pyte.Screen(cols, rows)
    stream = pyte.Stream(screen)
    lines = ansi.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = lines[-rows:]
    # Each captured line starts at column 0 of its own row, whatever the previous left behind.
    stream.feed("".join(f"\x1b[{i + 1};1H\x1b[0m{line}" for i, line in enumerate(lines)))
    return screen


def render(ansi: str, cols: int, rows: int, cursor: tuple[int, int] | None = None,
           font_size: int = 15) -> Shot:
    """Draw a captured screen; `cursor` is (x, y) in cells, from tmux."""
    screen = emulate(ansi, cols, rows)
    regular, bold = _fonts(font_size)
    left, top, right, bottom = regular.getbbox("M█")
    cell_w = max(1, round(regular.getlength("M")))
    ascent, descent = regular.getmetrics() if hasattr(regular, "getmetrics") else (bottom, 0)
    cell_h = ascent + descent
    pad = 8
    width, height = cols * cell_w + 2 * pad, rows * cell_h + 2 * pad
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    drawn = 0
    for y in range(rows):
        line = screen.buffer[y]
        x = 0
        while x < cols:
            char = line[x]
            fg = _colour(char.fg, FOREGROUND)
            bg = _colour(char.bg, BACKGROUND)
            if char.reverse:
                fg, bg = bg, fg
            # A run of cells with the same look is drawn in one call.
            end = x + 1
            while end < cols:
                nxt = line[end]
                if (nxt.fg, nxt.bg, nxt.bold, nxt.reverse, nxt.underscore) != \
                        (char.fg, char.bg, char.bold, char.reverse, char.underscore):
                    break
                end += 1
            px, py = pad + x * cell_w, pad + y * cell_h
            if bg != BACKGROUND:
                draw.rectangle([px, py, pad + end * cell_w - 1, py + cell_h - 1], fill=bg)
            font = bold if char.bold else regular
            cells = [line[cx].data for cx in range(x, end)]
            drawn += sum(1 for data in cells if data and not data.isspace())
            if all(len(data) == 1 for data in cells):
                # One call per run: a monospace font keeps the grid.
                text = "".join(cells).rstrip()
                if text.strip():
                    draw.text((px, py), text, font=font, fill=fg)
            else:
                # Wide glyphs (an empty cell follows them) or combining marks: cell by cell.
                for cx, data in zip(range(x, end), cells):
                    if data and not data.isspace():
                        draw.text((pad + cx * cell_w, py), data, font=font, fill=fg)
            if char.underscore:
                draw.line([px, py + cell_h - 2, pad + end * cell_w - 1, py + cell_h - 2], fill=fg)
            x = end
    if cursor is not None and 0 <= cursor[0] < cols and 0 <= cursor[1] < rows:
        cx, cy = pad + cursor[0] * cell_w, pad + cursor[1] * cell_h
        draw.rectangle([cx, cy, cx + cell_w - 1, cy + cell_h - 1], outline=CURSOR, width=2)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6)
    return Shot(out.getvalue(), width, height, drawn)
