"""An agent's answer, from Markdown to the HTML subset Telegram accepts.

Telegram's HTML knows b, i, u, s, code, pre (with `language-…`), a,
blockquote, and nothing else: no lists, headings or tables, and it refuses a
whole message over one unbalanced tag. So the answer is parsed (markdown-it,
CommonMark plus tables and strikethrough), and the tree is written out in
that subset: headings bold, lists as bullet lines, tables as preformatted
text. Tags come from the tree, so they always balance; anything the parser or
this writer cannot handle falls back to escaped text. `head()` cuts at a
block boundary so a long answer's first part is still valid HTML.
"""

from __future__ import annotations

import html
import logging
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

log = logging.getLogger(__name__)

INLINE_TAGS = {"strong": "b", "em": "i", "s": "s"}
SAFE_SCHEMES = ("http://", "https://", "tg://", "mailto:")


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])


def esc(text: str) -> str:
    return html.escape(text, quote=False)


def _inline(children: list[Token]) -> str:
    out: list[str] = []
    links: list[bool] = []
    for tok in children:
        kind = tok.type
        if kind == "text":
            out.append(esc(tok.content))
        elif kind == "code_inline":
            out.append(f"<code>{esc(tok.content)}</code>")
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind.endswith("_open") and kind[:-5] in INLINE_TAGS:
            out.append(f"<{INLINE_TAGS[kind[:-5]]}>")
        elif kind.endswith("_close") and kind[:-6] in INLINE_TAGS:
            out.append(f"</{INLINE_TAGS[kind[:-6]]}>")
        elif kind == "link_open":
            href = str(tok.attrs.get("href", ""))
            ok = href.startswith(SAFE_SCHEMES)
            links.append(ok)
            if ok:
                out.append(f'<a href="{html.escape(href, quote=True)}">')
        elif kind == "link_close":
            if links and links.pop():
                out.append("</a>")
        elif kind == "image":
            out.append(esc(tok.content or str(tok.attrs.get("src", ""))))
        elif kind in ("html_inline",):
            out.append(esc(tok.content))
        else:
            out.append(esc(tok.content))
    return "".join(out)


def _blocks(tokens: list[Token]) -> list[str]:
    """Each top-level block of the answer as Telegram HTML."""
    blocks: list[str] = []
    current: list[str] = []
    lists: list[list[int]] = []  # per open list: [next number] or [] for bullets
    quote_depth = 0
    depth = 0
    table_rows: list[list[str]] | None = None
    row: list[str] = []

    def flush() -> None:
        text = "".join(current).strip("\n")
        current.clear()
        if text:
            blocks.append(text)

    for tok in tokens:
        kind = tok.type
        depth += tok.nesting if tok.nesting < 0 else 0
        if kind == "heading_open":
            current.append("<b>")
        elif kind == "heading_close":
            current.append("</b>\n")
        elif kind == "paragraph_close":
            current.append("\n")
        elif kind == "inline":
            if table_rows is not None:
                row.append(tok.content)  # a table is drawn as plain monospace text
            else:
                current.append(_inline(tok.children or []))
        elif kind in ("bullet_list_open", "ordered_list_open"):
            lists.append([int(tok.attrs.get("start", 1) or 1)] if kind == "ordered_list_open" else [])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            indent = "  " * (len(lists) - 1)
            marker = "•"
            if lists and lists[-1]:
                marker = f"{lists[-1][0]}."
                lists[-1][0] += 1
            current.append(f"{indent}{marker} ")
        elif kind in ("fence", "code_block"):
            lang = (tok.info or "").strip().split(" ")[0]
            cls = f' class="language-{html.escape(lang, quote=True)}"' if lang else ""
            current.append(f"<pre><code{cls}>{esc(tok.content.rstrip(chr(10)))}</code></pre>\n")
        elif kind == "blockquote_open":
            if quote_depth == 0:
                flush()
                current.append("<blockquote>")
            quote_depth += 1
        elif kind == "blockquote_close":
            quote_depth -= 1
            if quote_depth == 0:
                while current and current[-1].endswith("\n") and current[-1].strip() == "":
                    current.pop()
                text = "".join(current[1:]).strip("\n")
                current[1:] = [text]
                current.append("</blockquote>")
        elif kind == "hr":
            current.append("———\n")
        elif kind == "table_open":
            table_rows = []
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and table_rows is not None:
            table_rows.append(row)
        elif kind == "table_close" and table_rows is not None:
            widths = [max(len(r[i]) if i < len(r) else 0 for r in table_rows)
                      for i in range(max(len(r) for r in table_rows))] if table_rows else []
            lines = [" │ ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in table_rows]
            current.append(f"<pre>{esc(chr(10).join(lines))}</pre>\n")
            table_rows = None
        elif kind in ("html_block",):
            current.append(esc(tok.content))
        if tok.level == 0 and tok.nesting <= 0 and quote_depth == 0 and not lists and table_rows is None:
            flush()
    flush()
    return blocks


def to_html(markdown: str) -> str:
    """The whole answer as Telegram HTML; escaped plain text if it can't be converted."""
    return "\n\n".join(blocks(markdown))


def blocks(markdown: str) -> list[str]:
    try:
        return _blocks(_parser().parse(markdown))
    except Exception:  # odd input must never cost the person the answer
        log.warning("could not convert an answer from Markdown; sending it as text", exc_info=True)
        return [esc(markdown)]


def head(markdown: str, limit: int = 4096) -> tuple[str, bool]:
    """As much of the answer as fits in `limit` characters, cut between blocks; (html, was_cut)."""
    parts = blocks(markdown)
    out = ""
    for i, part in enumerate(parts):
        candidate = part if not out else f"{out}\n\n{part}"
        if len(candidate) > limit - 2:
            if not out:
                # One block alone is too long: plain escaped text, cut by characters.
                return esc(markdown[: max(0, limit - 200)]) + " …", True
            return out + "\n…", True
        out = candidate
    return out, False
