"""Final answers in full and readable: Markdown to Telegram's HTML subset."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from bot.telegram.markdown import head, to_html

ANSWERS = Path(__file__).parent / "answers"
TELEGRAM_TAGS = {"b", "i", "u", "s", "code", "pre", "a", "blockquote"}


class _Checker(HTMLParser):
    """Fails on any tag Telegram would refuse, or one left open."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        assert tag in TELEGRAM_TAGS, f"Telegram refuses <{tag}>"
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check(html: str) -> str:
    parser = _Checker()
    parser.feed(html)
    parser.close()
    assert not parser.stack, f"left open: {parser.stack}"
    assert not re.search(r"<(?![/a-z])|&(?![a-z]+;|#\d+;)", html), "an unescaped < or &"
    return "".join(parser.text)


def test_a_real_answer_keeps_code_lists_bold_and_links() -> None:
    html = to_html((ANSWERS / "refactor.md").read_text())
    text = check(html)
    assert '<pre><code class="language-python">def decide' in html
    assert "x &lt; 3 &amp; y &gt; 2" in html
    assert "<b>What changed</b>" in html
    assert "1. <b><code>core/delivery.py</code></b>" in html
    assert "  • table-driven" in html
    assert "<s>two</s>" in html
    assert '<a href="https://example.com/issues/8">the issue</a>' in html
    assert "<blockquote>Note: the settle is now 0 ms for typed text.</blockquote>" in html
    assert "p50    │ 340 ms │ 150 ms" in text
    assert "A bare &lt;tag&gt; &amp; an ampersand" in html


def test_an_unbalanced_fence_still_gives_valid_html_with_every_line() -> None:
    source = (ANSWERS / "unbalanced.md").read_text()
    text = check(to_html(source))
    assert "rm -rf build/ && make <target>" in text
    assert 'echo "done" **not bold**' in text


def test_odd_markdown_never_breaks_the_html() -> None:
    for source in ["**open bold", "`open code", "[link](javascript:alert(1))", "<script>x</script>",
                   "> > nested\n> quote", "- a\n\n  - b\n\n    ```\n    c\n    ```", "|a|\n|-|\n|<b>|",
                   "\x00\x1b[31m", "#" * 10, "* * *", "1) one\n2) two", "![img](http://x/y.png)"]:
        html = to_html(source)
        check(html)
        assert 'href="javascript' not in html


def test_a_10_kb_answer_is_cut_between_blocks_and_stays_valid() -> None:
    source = "\n\n".join(f"Paragraph {i} with `code {i}` and **bold**." + " filler" * 30 for i in range(60))
    assert len(source) > 10_000
    html, was_cut = head(source, 4096)
    assert was_cut and len(html) <= 4096
    check(html)
    assert html.rstrip().endswith("…")
    full = to_html(source)
    assert "Paragraph 59" in full and check(full)


def test_a_short_answer_is_not_cut() -> None:
    html, was_cut = head("just **one** line", 4096)
    assert (html, was_cut) == ("just <b>one</b> line", False)
