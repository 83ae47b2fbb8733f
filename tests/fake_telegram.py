"""A strict fake of the Telegram Bot API, on loopback, for driving the real aiogram client.

Point aiogram at it::

    fake = FakeTelegram()
    url = await fake.start()
    bot = Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(url)))
    ...
    await fake.stop()

(or ``async with FakeTelegram() as fake:``).  aiogram POSTs form fields (multipart
when a file is attached) to ``/bot<token>/<method>``, with JSON inside fields such as
``reply_markup``; it picks its exception from the HTTP status code.  So every answer
here carries the real status code and a Telegram-shaped body::

    200 {"ok": true, "result": ...}
    400 {"ok": false, "error_code": 400, "description": "Bad Request: ..."}
    429 {"ok": false, "error_code": 429, "description": "Too Many Requests: retry after N",
         "parameters": {"retry_after": N}}                 -> aiogram TelegramRetryAfter
    401 "Unauthorized" (wrong token), 403 "Forbidden: ...", 404 "Not Found" (unknown method)
    409 "Conflict: terminated by other getUpdates request; ..." (a newer getUpdates won)

What it models (all in memory, one event loop):

* chats: forum supergroups (``add_forum_group``; the bot is an admin with
  ``can_manage_topics``), plain supergroups (``add_group``) and private chats (chat id ==
  user id, created by ``add_private_chat`` or by the user's first ``send_text``).  Private
  chats have topics when ``has_topics_enabled`` is set (``getMe().has_topics_enabled``).
* forum topics: ``createForumTopic`` makes a service message whose ``message_id`` is the
  topic's ``message_thread_id``; edit/close/reopen add service messages like Telegram does;
  ``deleteForumTopic`` deletes the topic and its messages.
* incoming updates made by the test: ``bot_added`` (``my_chat_member``: someone added the bot
  to a group), ``send_text`` (a user's message, shaped like Telegram's:
  ``message_thread_id`` + ``is_topic_message`` in a topic, ``reply_to_message`` = the topic's
  creation message unless it is a real reply) and ``press`` (a ``callback_query`` on a message
  the bot sent).  ``getUpdates`` long-polls: it returns as soon as an update is queued.
* every accepted call is recorded in ``calls`` (``getUpdates`` is left out: it is noise);
  refused ones in ``rejected``.  ``messages()``, ``topics()``, ``pinned()``,
  ``answered_callbacks``, ``commands`` and ``wait_for()`` read the state back.

Strictness (the exact ``description`` strings; ``test_fake_telegram.py`` checks each):

* ``Bad Request: chat not found`` -- unknown chat (private chats exist only once the user
  wrote to the bot or the test added them, like Telegram).
* ``Bad Request: message thread not found`` -- ``message_thread_id`` that is not a live topic
  of that chat (never created, or deleted).
* ``Bad Request: TOPIC_CLOSED`` -- sending (sendMessage/sendDocument/sendChatAction) into a
  closed topic.  (Real Telegram lets admins with can_manage_topics post there; this fake is
  stricter on purpose, so code that must reopen first is caught.)
* ``Bad Request: message text is empty`` -- missing text, or nothing but whitespace after
  parsing.  ``Bad Request: message is too long`` -- more than 4096 characters;
  ``Bad Request: message caption is too long`` -- caption over 1024.  Lengths are counted
  in Unicode code points (Python ``len()``) of the text AFTER removing HTML tags and decoding
  entities, like tdlib's ``utf8_length``; entity offsets returned are in UTF-16 units.
* parse_mode HTML is parsed like tdlib's ``parse_html`` (same error strings, prefixed with
  ``Bad Request: can't parse entities: ``): ``Unsupported start tag "x" at byte offset N``,
  ``Unclosed start tag at byte offset N``, ``Unexpected end tag at byte offset N``,
  ``Unclosed end tag at byte offset N``, ``Unmatched end tag at byte offset N, expected
  "</b>", found "</i>"``, ``Can't find end tag corresponding to start tag b``,
  ``Empty attribute name in the tag "a" at byte offset N``, ``Expected equal sign in
  declaration of an attribute of the tag "a" at byte offset N``, ``Unexpected end of name
  token at byte offset N``, ``Tag "span" must have class "tg-spoiler" at byte offset N``.
  Allowed tags: b strong i em u ins s strike del span(class="tg-spoiler") tg-spoiler a(href)
  code(class="language-x") pre blockquote(optionally ``expandable``) tg-emoji(emoji-id).
  Entities: ``&lt; &gt; &amp; &quot;`` and numeric ``&#NN;``/``&#xHH;``.  One deliberate
  difference: tdlib keeps an unknown ``&`` literally; this fake (``strict_ampersand=True``,
  the default) refuses it with ``Unescaped "&" at byte offset N``, because Telegram's docs
  require escaping and agent output is full of bare ``&``.  Set ``strict_ampersand = False``
  for tdlib's leniency.  Other parse modes (Markdown, MarkdownV2) are accepted unchecked;
  an unknown parse_mode gives ``Bad Request: unsupported parse_mode``.
* inline keyboards: ``Bad Request: BUTTON_DATA_INVALID`` for callback_data outside 1..64
  UTF-8 bytes; ``Bad Request: can't parse inline keyboard button: Text buttons are
  unallowed in the inline keyboard`` for a button without an action; ``Bad Request: can't
  parse inline keyboard button: Text must be non-empty``; ``Bad Request: inline keyboard
  button URL '...' is invalid: Wrong HTTP URL`` for a url button without http(s)/tg scheme;
  ``Bad Request: can't parse reply keyboard markup JSON object`` for bad JSON.
* ``Bad Request: message is not modified: specified new message content and reply markup
  are exactly the same as a current content and reply markup of the message`` -- an edit
  that changes nothing (editMessageText compares text, entities and markup; omitting
  reply_markup in editMessageText removes the keyboard, as on Telegram).
* ``Bad Request: message to edit not found`` / ``message to delete not found`` /
  ``message to pin not found`` / ``message to be replied not found`` / ``message can't be
  edited`` (not the bot's) / ``there is no text in the message to edit`` (a document).
* topics: ``Bad Request: the chat is not a forum``, ``Bad Request: not enough rights to
  create a topic`` (``bot_can_manage_topics(chat, False)``), ``Bad Request:
  TOPIC_NOT_MODIFIED`` (closing a closed topic, reopening an open one, an edit that changes
  nothing), ``Bad Request: TOPIC_TITLE_EMPTY``, ``Bad Request: TOPIC_NAME_INVALID`` (over 128
  characters), ``Bad Request: ICON_COLOR_INVALID`` (not one of Telegram's six colours).  These
  topic strings were not verified against production.
* ``Bad Request: query is too old and response timeout expired or query ID is invalid`` --
  answerCallbackQuery with an unknown or already answered id.
* ``Bad Request: BOT_COMMAND_INVALID`` / ``Bad Request: BOT_COMMAND_DESCRIPTION_INVALID``
  for setMyCommands; ``Bad Request: wrong parameter action in request`` for sendChatAction;
  ``Bad Request: file must be non-empty``; ``Bad Request: wrong file identifier/HTTP URL
  specified``; ``Forbidden: bot was blocked by the user`` (``block(user_id)``).
* rate limits (``limits``, enabled by default): per group chat ``group_per_minute`` (20) in a
  sliding ``group_window`` (60 s), per private chat ``private_per_second`` (1) in
  ``private_window`` (1 s), overall ``global_per_second`` (30) in ``global_window`` (1 s);
  optionally ``group_per_second`` (off).  Counted methods (``limits.counted``): sendMessage,
  editMessageText, editMessageReplyMarkup, sendDocument, createForumTopic, editForumTopic,
  closeForumTopic, reopenForumTopic, pinChatMessage.  Validation runs first; a call refused
  with 400 or 429 is not counted.  Over a limit -> 429 ``Too Many Requests: retry after N``.

window_scale: every window length is multiplied by ``window_scale`` (``FakeTelegram(
window_scale=0.1)``: the 60 s group window becomes 6 s, the 1 s windows 0.1 s).
``retry_after`` is always in real wall-clock seconds of the injected ``clock``: the time
until the (scaled) window admits the call, rounded UP to an integer, at least 1.  So
sleeping ``retry_after`` seconds is always enough, and 0.1 s windows still report 1.
``clock`` (default ``time.monotonic``) may be replaced to drive the windows by hand.

Outage: ``outage(True)`` -> every request gets HTTP 502 with a JSON body (aiogram raises
``TelegramServerError``); ``outage(True, mode="drop")`` closes the connection without a
response (``TelegramNetworkError``); ``outage(True, mode="html")`` answers 502 with an nginx
HTML page as real Telegram does (aiogram then raises ``ClientDecodeError``, not a
TelegramServerError!).  Long polls in flight fail too.  ``outage(False)`` ends it.
"""

from __future__ import annotations

import asyncio
import json
import math
import mimetypes
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from fake_telegram_files import FileMethods

__all__ = ["FakeTelegram", "Limits", "GENERAL", "NOT_MODIFIED", "TOPIC_COLORS", "ApiError", "parse_html",
           "HtmlError"]

GENERAL = 0
"""``thread_id`` value selecting only messages outside any topic (the General topic)."""

TOPIC_COLORS = (0x6FB9F0, 0xFFD67E, 0xCB86DB, 0x8EEE98, 0xFF93B2, 0xFB6F5F)

NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message")

_CHAT_ACTIONS = {"typing", "upload_photo", "record_video", "upload_video", "record_voice",
                 "upload_voice", "upload_document", "choose_sticker", "find_location",
                 "record_video_note", "upload_video_note"}

_INT_FIELDS = {"chat_id", "message_id", "message_thread_id", "offset", "limit", "timeout",
               "reply_to_message_id", "cache_time", "user_id", "from_chat_id", "icon_color"}
_BOOL_FIELDS = {"disable_notification", "protect_content", "show_alert", "drop_pending_updates",
                "disable_web_page_preview", "allow_sending_without_reply",
                "disable_content_type_detection", "allow_paid_broadcast", "is_big"}
_JSON_FIELDS = {"reply_markup", "entities", "caption_entities", "commands", "scope",
                "allowed_updates", "link_preview_options", "reply_parameters", "reaction", "media"}

_BUTTON_ACTIONS = ("url", "callback_data", "login_url", "switch_inline_query",
                   "switch_inline_query_current_chat", "switch_inline_query_chosen_chat",
                   "copy_text", "callback_game", "pay", "web_app")

_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")


class ApiError(Exception):
    """A refusal: HTTP status, Telegram description, optional ``parameters``."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> ApiError:
    return ApiError(400, "Bad Request: " + description)


class _OutageError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# HTML parse mode (a port of tdlib's parse_html, td/telegram/MessageEntity.cpp)
# ---------------------------------------------------------------------------------------------

class HtmlError(ValueError):
    """The text after ``can't parse entities: `` in Telegram's answer."""


_HTML_TAGS = {"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler",
              "tg-emoji", "span", "pre", "code", "blockquote"}
_SIMPLE_ENTITY = {"i": "italic", "em": "italic", "b": "bold", "strong": "bold",
                  "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
                  "u": "underline", "ins": "underline", "tg-spoiler": "spoiler"}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _utf16_len(s: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in s)


def _is_space(ch: str) -> bool:
    return ch in " \t\r\n\f\v"


def _decode_entity(text: str, pos: int) -> tuple[str, int] | None:
    """tdlib's decode_html_entity: (character, position after it) or None."""
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        value = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in "0123456789abcdefABCDEF":
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while end < n and text[end].isdigit() and text[end].isascii():
                value = value * 10 + int(text[end])
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10 or 0xD800 <= value <= 0xDFFF:
            return None
        ch = chr(value)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        ch = _NAMED_ENTITIES.get(text[pos + 1:end])
        if ch is None:
            return None
    if end < n and text[end] == ";":
        end += 1
    return ch, end


def parse_html(text: str, strict_ampersand: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Telegram HTML -> (plain text, entities).  Raises HtmlError like tdlib."""
    byte_offsets: list[int] = []  # lazily: byte offset of each character index
    def boff(index: int) -> int:
        if not byte_offsets:
            total = 0
            for ch in text:
                byte_offsets.append(total)
                total += len(ch.encode("utf-8", "surrogatepass"))
            byte_offsets.append(total)
        return byte_offsets[index]

    out: list[str] = []
    u16 = 0
    stack: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_entity(text, i)
            if decoded is not None:
                ch, i = decoded
                out.append(ch)
                u16 += _utf16_len(ch)
                continue
            if strict_ampersand:
                raise HtmlError(f'Unescaped "&" at byte offset {boff(i)}')
        if c != "<":
            out.append(c)
            u16 += _utf16_len(c)
            i += 1
            continue

        begin = i
        i += 1
        if i < n and text[i] == "/":
            # end tag
            if not stack:
                raise HtmlError(f"Unexpected end tag at byte offset {boff(begin)}")
            j = i + 1
            while j < n and not _is_space(text[j]) and text[j] != ">":
                j += 1
            end_name = text[i + 1:j].lower()
            while j < n and _is_space(text[j]):
                j += 1
            if j >= n or text[j] != ">":
                raise HtmlError(f"Unclosed end tag at byte offset {boff(begin)}")
            top = stack[-1]
            if end_name and end_name != top["tag"]:
                raise HtmlError(f'Unmatched end tag at byte offset {boff(begin)}, expected '
                                f'"</{top["tag"]}>", found "</{end_name}>"')
            i = j + 1
            stack.pop()
            start, tag, arg = top["offset"], top["tag"], top["argument"]
            if u16 <= start:
                continue
            length = u16 - start
            if tag in _SIMPLE_ENTITY or tag == "span":
                entities.append({"type": _SIMPLE_ENTITY.get(tag, "spoiler"), "offset": start,
                                 "length": length})
            elif tag == "tg-emoji":
                if not arg.isdigit() or int(arg) == 0:
                    raise HtmlError("Invalid custom emoji identifier specified")
                entities.append({"type": "custom_emoji", "offset": start, "length": length,
                                 "custom_emoji_id": arg})
            elif tag == "a":
                url = arg or "".join(out[top["out_index"]:])
                if url:
                    entities.append({"type": "text_link", "offset": start, "length": length,
                                     "url": url})
            elif tag == "pre":
                last = entities[-1] if entities else None
                if (last and last["type"] == "code" and last["offset"] == start
                        and last["length"] == length and last.get("language")):
                    last["type"] = "pre"
                else:
                    entities.append({"type": "pre", "offset": start, "length": length})
            elif tag == "code":
                last = entities[-1] if entities else None
                if (last and last["type"] == "pre" and last["offset"] == start
                        and last["length"] == length and arg):
                    last["language"] = arg
                else:
                    entity = {"type": "code", "offset": start, "length": length}
                    if arg:
                        entity["language"] = arg
                    entities.append(entity)
            elif tag == "blockquote":
                entities.append({"type": "expandable_blockquote" if top["expandable"]
                                 else "blockquote", "offset": start, "length": length})
            continue

        # start tag
        j = i
        while j < n and not _is_space(text[j]) and text[j] != ">":
            j += 1
        if j >= n:
            raise HtmlError(f"Unclosed start tag at byte offset {boff(begin)}")
        tag = text[i:j].lower()
        if tag not in _HTML_TAGS:
            raise HtmlError(f'Unsupported start tag "{tag}" at byte offset {boff(begin)}')
        argument = ""
        expandable = False
        i = j
        while i < n and text[i] != ">":
            while i < n and _is_space(text[i]):
                i += 1
            if i >= n:
                raise HtmlError(f"Unclosed start tag at byte offset {boff(begin)}")
            if text[i] == ">":
                break
            attr_begin = i
            while i < n and not _is_space(text[i]) and text[i] not in "=>":
                i += 1
            attr_name = text[attr_begin:i].lower()
            if not attr_name:
                raise HtmlError(f'Empty attribute name in the tag "{tag}" at byte offset '
                                f"{boff(begin)}")
            while i < n and _is_space(text[i]):
                i += 1
            if i >= n:
                raise HtmlError(f"Unclosed start tag at byte offset {boff(begin)}")
            if text[i] != "=":
                if tag == "blockquote" and attr_name == "expandable":
                    expandable = True
                    continue
                raise HtmlError(f'Expected equal sign in declaration of an attribute of the tag '
                                f'"{tag}" at byte offset {boff(begin)}')
            i += 1
            while i < n and _is_space(text[i]):
                i += 1
            if i >= n:
                raise HtmlError(f'Unclosed start tag "{tag}" at byte offset {boff(begin)}')
            if text[i] not in "'\"":
                token_begin = i
                while i < n and (text[i].isascii() and text[i].isalnum() or text[i] in ".-"):
                    i += 1
                value = text[token_begin:i].lower()
                if i >= n or not (_is_space(text[i]) or text[i] == ">"):
                    raise HtmlError(f"Unexpected end of name token at byte offset "
                                    f"{boff(token_begin)}")
            else:
                quote = text[i]
                i += 1
                chars: list[str] = []
                while i < n and text[i] != quote:
                    if text[i] == "&":
                        decoded = _decode_entity(text, i)
                        if decoded is not None:
                            chars.append(decoded[0])
                            i = decoded[1]
                            continue
                    chars.append(text[i])
                    i += 1
                if i < n:
                    i += 1
                value = "".join(chars)
            if i >= n:
                raise HtmlError(f"Unclosed start tag at byte offset {boff(begin)}")
            if tag == "a" and attr_name == "href":
                argument = value
            elif tag == "code" and attr_name == "class" and value.startswith("language-"):
                argument = value[len("language-"):]
            elif tag == "span" and attr_name == "class" and value.startswith("tg-"):
                argument = value[len("tg-"):]
            elif tag == "tg-emoji" and attr_name == "emoji-id":
                argument = value
        if tag == "span" and argument != "spoiler":
            raise HtmlError(f'Tag "span" must have class "tg-spoiler" at byte offset {boff(begin)}')
        i += 1  # past '>'
        stack.append({"tag": tag, "argument": argument, "offset": u16, "out_index": len(out),
                      "expandable": expandable})

    if stack:
        raise HtmlError(f"Can't find end tag corresponding to start tag {stack[-1]['tag']}")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


# ---------------------------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------------------------

@dataclass
class Limits:
    """Rate limits; windows are in seconds before ``window_scale``.  None switches one off."""

    enabled: bool = True
    group_per_minute: int | None = 20
    group_window: float = 60.0
    group_per_second: int | None = None
    private_per_second: int | None = 1
    private_window: float = 1.0
    global_per_second: int | None = 30
    global_window: float = 1.0
    counted: set[str] = field(default_factory=lambda: {
        "sendMessage", "editMessageText", "editMessageReplyMarkup", "sendDocument",
        "createForumTopic", "editForumTopic", "closeForumTopic", "reopenForumTopic",
        "pinChatMessage", "sendPhoto", "sendMediaGroup", "editMessageMedia", "setMessageReaction"})


@dataclass
class _Topic:
    thread_id: int
    name: str
    icon_color: int
    icon_custom_emoji_id: str | None = None
    closed: bool = False
    deleted: bool = False


@dataclass
class _Chat:
    id: int
    type: str                       # "supergroup" | "private"
    title: str | None = None
    is_forum: bool = False
    user: dict[str, Any] | None = None
    can_manage_topics: bool = True
    bot_status: str = "administrator"  # the bot's ChatMember status in a group
    members: dict[int, dict[str, Any]] = field(default_factory=dict)  # users seen writing here
    blocked: bool = False
    next_message_id: int = 1
    topics: dict[int, _Topic] = field(default_factory=dict)
    pinned: list[int] = field(default_factory=list)


@dataclass
class _Message:
    chat_id: int
    message_id: int
    thread_id: int | None
    kind: str                       # "text" | "document" | "service" | "user"
    obj: dict[str, Any]
    from_bot: bool
    raw: str | None = None
    parse_mode: str | None = None
    edits: int = 0
    deleted: bool = False
    document: dict[str, Any] | None = None
    silent: bool = False            # sent with disable_notification: no sound on the phone


# -- photos and reactions (the phone: screenshots, acknowledgements) ------------------------

# Telegram's reaction emoji (ReactionTypeEmoji): anything else is REACTION_INVALID.
REACTION_EMOJI = frozenset(
    "👍 👎 ❤ 🔥 🥰 👏 😁 🤔 🤯 😱 🤬 😢 🎉 🤩 🤮 💩 🙏 👌 🕊 🤡 🥱 🥴 😍 🐳 ❤‍🔥 🌚 🌭 💯 🤣 ⚡ 🍌 🏆 💔 "
    "🤨 😐 🍓 🍾 💋 🖕 😈 😴 😭 🤓 👻 👨‍💻 👀 🎃 🙈 😇 😨 🤝 ✍ 🤗 🫡 🎅 🎄 ☃ 💅 🤪 🗿 🆒 💘 🙉 🦄 😘 "
    "💊 🙊 😎 👾 🤷‍♂ 🤷 🤷‍♀ 😡".split())
PHOTO_MAX_BYTES = 10 * 1024 * 1024


class _PhoneMethods:
    """sendPhoto, editMessageMedia and setMessageReaction, with Telegram's limits:
    photos up to 10 MB, width + height at most 10000 and a ratio of at most 20,
    captions of 1024 characters, reactions from Telegram's list only."""

    def _phone_methods(self: Any) -> dict[str, Callable[[dict[str, Any], Any], Any]]:
        # sendPhoto itself is the files mixin's (tests/fake_telegram_files.py), which both use.
        return {"editMessageMedia": self._edit_message_media, "setMessageReaction": self._set_message_reaction}

    def _photo(self: Any, photo: Any) -> dict[str, Any]:
        if not (isinstance(photo, dict) and "content" in photo):
            raise _bad("wrong file identifier/HTTP URL specified")
        content = photo["content"]
        if not content:
            raise _bad("file must be non-empty")
        if len(content) > PHOTO_MAX_BYTES:
            raise _bad("PHOTO_SAVE_FILE_INVALID")
        if content[:8] != b"\x89PNG\r\n\x1a\n" and content[:3] != b"\xff\xd8\xff":
            raise _bad("IMAGE_PROCESS_FAILED")
        width = height = 0
        if content[:4] == b"\x89PNG":
            width, height = int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
            if width + height > 10000 or max(width, height) > 20 * max(1, min(width, height)):
                raise _bad("PHOTO_INVALID_DIMENSIONS")
        file_id = "AgACAgIAAx" + secrets.token_urlsafe(24)
        self._files[file_id] = {"file_id": file_id, "file_unique_id": "AQAD" + secrets.token_urlsafe(8),
                                "file_name": None, "mime_type": "image/png", "content": content,
                                "file_size": len(content), "file_path": f"photos/file_{len(self._files)}.png"}
        return {"file_id": file_id, "file_unique_id": self._files[file_id]["file_unique_id"],
                "width": width, "height": height, "file_size": len(content)}

    def _edit_message_media(self: Any, params: dict[str, Any], request: Any) -> dict[str, Any]:
        chat = self._chat(params)
        msg = self._bot_message(chat, params, "edit")
        if not msg.from_bot or msg.kind == "service":
            raise _bad("message can't be edited")
        media = params.get("media")
        if not isinstance(media, dict) or media.get("type") != "photo":
            raise _bad("can't parse InputMedia JSON object")
        if msg.kind != "photo":
            raise _bad("there is no media in the message to edit")
        attached = media.get("media")
        if isinstance(attached, str) and attached.startswith("attach://"):
            attached = params.get(attached[len("attach://"):])
        caption, entities = self._format(media.get("caption"), media.get("parse_mode") or params.get("parse_mode"),
                                         media.get("caption_entities"), 1024, caption=True)
        markup = self._check_markup(params.get("reply_markup"), inline_only=True)
        if isinstance(attached, dict) and attached.get("content") == self._files.get(
                msg.obj["photo"][0]["file_id"], {}).get("content") and caption == msg.obj.get("caption", "") \
                and self._same_markup(markup, msg.obj.get("reply_markup")):
            raise ApiError(400, NOT_MODIFIED)
        size = self._photo(attached)
        self._rate_check("editMessageMedia", chat)
        msg.obj["photo"] = [size]
        msg.obj.pop("caption", None)
        if caption:
            msg.obj["caption"] = caption
        msg.obj.pop("reply_markup", None)
        if markup:
            msg.obj["reply_markup"] = markup
        msg.obj["edit_date"] = int(time.time())
        msg.edits += 1
        return msg.obj

    def _set_message_reaction(self: Any, params: dict[str, Any], request: Any) -> bool:
        chat = self._chat(params)
        msg = self._msgs.get((chat.id, params.get("message_id")))
        if msg is None or msg.deleted or msg.kind == "service":
            raise _bad("MESSAGE_ID_INVALID")
        reaction = params.get("reaction") or []
        if not isinstance(reaction, list):
            raise _bad("can't parse reaction types JSON object")
        emoji = []
        for item in reaction:
            if not isinstance(item, dict) or item.get("type") != "emoji":
                raise _bad("REACTION_INVALID")
            if item.get("emoji") not in REACTION_EMOJI:
                raise _bad("REACTION_INVALID")
            emoji.append(item["emoji"])
        if len(emoji) > 1:
            raise _bad("REACTIONS_TOO_MANY")  # a bot sets at most one reaction
        self._rate_check("setMessageReaction", chat)
        self.reactions[(chat.id, msg.message_id)] = emoji
        return True

    def photo(self: Any, chat_id: int, message_id: int) -> bytes | None:
        """The PNG a photo message shows now."""
        msg = self._msgs.get((chat_id, message_id))
        if msg is None or "photo" not in msg.obj:
            return None
        return self._files[msg.obj["photo"][0]["file_id"]]["content"]


class FakeTelegram(FileMethods, _PhoneMethods):
    """The fake Bot API server.  See the module docstring for the whole contract.

    Lifecycle: ``await start() -> url``, ``await stop()``, or ``async with``.
    Settings (plain attributes, change them any time): ``limits`` (:class:`Limits`),
    ``window_scale``, ``clock``, ``has_topics_enabled``, ``strict_ampersand``.
    Chats and users: ``user()``, ``add_forum_group()``, ``add_group()``, ``add_private_chat()``,
    ``add_topic()`` (a topic made by a human), ``bot_can_manage_topics()``, ``set_bot_status()``,
    ``block()``.
    Updates: ``bot_added()``, ``send_text()``, ``press()``; ``updates`` is the unconfirmed queue.
    Failures: ``outage()``, ``fail_next()``.
    Reading back: ``calls`` [(method, params)] (accepted calls except getUpdates, JSON fields
    decoded, ints/bools converted, an uploaded file as {"filename", "content", "content_type"}),
    ``rejected`` [(method, params, status, description)], ``sent(method)``, ``messages()``,
    ``message()``, ``topics()``, ``pinned()``, ``answered_callbacks``, ``commands``,
    ``commands_for()``, ``pending_updates``, ``await wait_for(predicate, timeout)``.
    """

    GENERAL = GENERAL

    def __init__(self, token: str = "123456:TEST-TOKEN", host: str = "127.0.0.1", port: int = 0,
                 *, window_scale: float = 1.0, clock: Callable[[], float] | None = None,
                 has_topics_enabled: bool = False, bot_username: str = "sm_test_bot",
                 bot_name: str = "sm test bot") -> None:
        self.token = token
        self.host = host
        self.port = port
        self.url = ""
        self.window_scale = window_scale
        self.clock: Callable[[], float] = clock or time.monotonic
        self.limits = Limits()
        self.has_topics_enabled = has_topics_enabled
        self.strict_ampersand = True
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user = {"id": self.bot_id, "is_bot": True, "first_name": bot_name,
                         "username": bot_username}

        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.rejected: list[tuple[str, dict[str, Any], int, str]] = []
        self.answered_callbacks: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []          # queued, not yet confirmed

        self._chats: dict[int, _Chat] = {}
        self._msgs: dict[tuple[int, int], _Message] = {}
        self._commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self._callbacks: dict[str, dict[str, Any]] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._injected: list[dict[str, Any]] = []
        self._hits: dict[Any, deque[float]] = {}
        self._next_update_id = 1000
        self._poll_generation = 0
        self.outage_hits = 0  # requests answered by an outage, so tests can wait for one
        self.unauthorized_hits = 0  # requests with a wrong token (answered 401)
        self._outage: str | None = None
        # Set to an Event: methods are carried out, but their answers wait for it (a slow
        # network on the way back: Telegram took the message, the client does not know yet).
        self.hold_answers: asyncio.Event | None = None
        self._stopping = False
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

        self._methods: dict[str, Callable[[dict[str, Any], dict[str, Any]],
                                          Awaitable[Any] | Any]] = {
            "getMe": self._get_me, "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook, "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands, "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message, "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message, "sendDocument": self._send_document,
            "getFile": self._get_file,
            "createForumTopic": self._create_forum_topic, "editForumTopic": self._edit_forum_topic,
            "closeForumTopic": self._close_forum_topic,
            "reopenForumTopic": self._reopen_forum_topic,
            "deleteForumTopic": self._delete_forum_topic,
            "pinChatMessage": self._pin_chat_message, "unpinChatMessage": self._unpin_chat_message,
            "answerCallbackQuery": self._answer_callback_query, "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "sendChatAction": self._send_chat_action,
        }
        self._methods.update(self._file_methods())  # tests/fake_telegram_files.py
        self._methods.update(self._phone_methods())
        self.reactions: dict[tuple[int, int], list[str]] = {}  # (chat, message) -> the bot's reaction
        self._method_names = {name.lower(): name for name in self._methods}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        self._stopping = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeTelegram":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- test controls: chats and users ---------------------------------------------------

    @staticmethod
    def user(user_id: int, first_name: str = "Ann", username: str | None = None,
             language_code: str | None = "en") -> dict[str, Any]:
        """A Telegram User object for a human."""
        u: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            u["username"] = username
        if language_code:
            u["language_code"] = language_code
        return u

    def add_forum_group(self, chat_id: int = -100123, title: str = "swarm") -> dict[str, Any]:
        """A supergroup with topics, where the bot is an admin with can_manage_topics."""
        return self.add_group(chat_id, title, is_forum=True)

    def add_group(self, chat_id: int, title: str = "group", is_forum: bool = False) -> dict[str, Any]:
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        self._chats[chat_id] = _Chat(id=chat_id, type="supergroup", title=title, is_forum=is_forum)
        return self._chat_obj(self._chats[chat_id])

    def add_private_chat(self, user: dict[str, Any]) -> dict[str, Any]:
        """The private chat with ``user`` (as if they had pressed Start)."""
        chat = self._chats.get(user["id"])
        if chat is None:
            chat = self._chats[user["id"]] = _Chat(id=user["id"], type="private", user=user)
        return self._chat_obj(chat)

    def bot_can_manage_topics(self, chat_id: int, allowed: bool = True) -> None:
        self._chats[chat_id].can_manage_topics = allowed

    def set_bot_status(self, chat_id: int, status: str) -> None:
        """The bot's role in a group: "administrator" (default), "member", "left"..."""
        self._chats[chat_id].bot_status = status

    def block(self, user_id: int, blocked: bool = True) -> None:
        """The user blocks the bot: sends to them get 403."""
        self._chats[user_id].blocked = blocked

    def add_topic(self, chat_id: int, name: str, icon_color: int = TOPIC_COLORS[0]) -> int:
        """A topic created by a human (no API call, nothing recorded): its thread id."""
        chat = self._chats[chat_id]
        return self._new_topic(chat, name, icon_color, None, creator=self.user(1, "Admin"))

    # -- test controls: incoming updates ---------------------------------------------------

    def send_text(self, chat_id: int, user: dict[str, Any], text: str, thread_id: int | None = None,
                  reply_to_message_id: int | None = None) -> dict[str, Any]:
        """Queue a user's text message, shaped as Telegram delivers it; returns the Message."""
        chat = self._chats.get(chat_id)
        if chat is None:
            if chat_id > 0 and chat_id == user["id"]:
                self.add_private_chat(user)
                chat = self._chats[chat_id]
            else:
                raise ValueError(f"no chat {chat_id}; add it first")
        reply = None
        if reply_to_message_id is not None:
            reply = self._msgs.get((chat_id, reply_to_message_id))
            if reply is None or reply.deleted:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat_id}")
            if thread_id is None:
                thread_id = reply.thread_id
        if thread_id is not None:
            topic = chat.topics.get(thread_id)
            if topic is None or topic.deleted:
                raise ValueError(f"no topic {thread_id} in chat {chat_id}")
        chat.members.setdefault(user["id"], user)
        obj: dict[str, Any] = {"text": text}
        entities = self._command_entities(text)
        if entities:
            obj["entities"] = entities
        msg = self._store(chat, thread_id, "user", obj, from_user=user, reply=reply)
        self._queue({"message": json.loads(json.dumps(msg.obj))})
        return msg.obj

    def bot_added(self, chat_id: int, by: dict[str, Any]) -> dict[str, Any]:
        """Queue the ``my_chat_member`` update Telegram sends when ``by`` adds the bot to a
        group (it comes whether or not the bot may read the group's messages)."""
        chat = self._chats[chat_id]
        chat.members.setdefault(by["id"], by)
        member = {"user": self.bot_user, "status": chat.bot_status}
        return self._queue({"my_chat_member": {
            "chat": self._chat_obj(chat), "from": by, "date": int(time.time()),
            "old_chat_member": {"user": self.bot_user, "status": "left"}, "new_chat_member": member}})

    def press(self, chat_id: int, user: dict[str, Any], message_id: int, data: str) -> str:
        """Queue a callback_query: ``user`` pressed a button of the bot's message.  Returns its id."""
        msg = self._msgs.get((chat_id, message_id))
        if msg is None or msg.deleted or not msg.from_bot:
            raise ValueError(f"no bot message {message_id} in chat {chat_id}")
        query_id = str(secrets.randbits(63))
        query = {"id": query_id, "from": user, "message": json.loads(json.dumps(msg.obj)),
                 "chat_instance": str(abs(hash((chat_id, self.bot_id))) % 10**18), "data": data}
        self._callbacks[query_id] = query
        self._queue({"callback_query": query})
        return query_id

    # -- test controls: failures --------------------------------------------------------------

    @property
    def polls_started(self) -> int:
        """How many getUpdates calls have reached the server (a long poll is in flight after one)."""
        return self._poll_generation

    def outage(self, on: bool = True, mode: str = "502") -> None:
        """Start (``mode`` "502", "drop" or "html") or end an outage of the whole API."""
        if mode not in ("502", "drop", "html"):
            raise ValueError("mode must be '502', 'drop' or 'html'")
        self._outage = mode if on else None
        self._notify()

    def fail_next(self, method: str, status: int, description: str, *,
                  retry_after: int | None = None, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` get this error instead of being served."""
        params = {"retry_after": retry_after} if retry_after is not None else None
        self._injected.append({"method": method, "status": status, "description": description,
                               "parameters": params, "times": times})

    # -- reading state back -------------------------------------------------------------------

    def messages(self, chat_id: int, thread_id: int | None = None) -> list[dict[str, Any]]:
        """The bot's messages now in the chat (thread_id None: all of it; GENERAL: outside
        topics; N: topic N), oldest first, with edits applied."""
        out = []
        for msg in self._msgs.values():
            if msg.chat_id != chat_id or msg.deleted or not msg.from_bot or msg.kind == "service":
                continue
            if thread_id is not None and (msg.thread_id or GENERAL) != thread_id:
                continue
            out.append(self._view(msg))
        return sorted(out, key=lambda m: m["message_id"])

    def service_messages(self, chat_id: int, thread_id: int) -> list[dict[str, Any]]:
        """The service messages of a topic (created, edited, closed, reopened), oldest first."""
        return [msg.obj for msg in sorted(self._msgs.values(), key=lambda m: m.message_id)
                if msg.chat_id == chat_id and msg.kind == "service" and msg.thread_id == thread_id]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The Telegram Message object as it is now (any sender), or None if gone."""
        msg = self._msgs.get((chat_id, message_id))
        return None if msg is None or msg.deleted else msg.obj

    def topics(self, chat_id: int, include_deleted: bool = False) -> dict[int, dict[str, Any]]:
        chat = self._chats[chat_id]
        return {tid: {"name": t.name, "icon_color": t.icon_color,
                      "icon_custom_emoji_id": t.icon_custom_emoji_id, "closed": t.closed,
                      "deleted": t.deleted}
                for tid, t in chat.topics.items() if include_deleted or not t.deleted}

    def pinned(self, chat_id: int, thread_id: int | None = None) -> list[int]:
        """Ids of the pinned messages, oldest pin first (thread_id as in ``messages``)."""
        chat = self._chats[chat_id]
        out = []
        for mid in chat.pinned:
            msg = self._msgs.get((chat_id, mid))
            if msg is None or msg.deleted:
                continue
            if thread_id is None or (msg.thread_id or GENERAL) == thread_id:
                out.append(mid)
        return out

    @property
    def commands(self) -> list[dict[str, str]]:
        """Commands from setMyCommands for the default scope and no language."""
        return self.commands_for()

    def commands_for(self, scope: dict[str, Any] | None = None,
                     language_code: str = "") -> list[dict[str, str]]:
        return list(self._commands.get(self._commands_key(scope, language_code), []))

    def sent(self, method: str) -> list[dict[str, Any]]:
        """Params of the accepted calls of one method."""
        return [params for name, params in self.calls if name == method]

    @property
    def pending_updates(self) -> int:
        return len(self.updates)

    async def wait_for(self, predicate: Callable[["FakeTelegram"], Any], timeout: float = 20.0) -> Any:
        """Return predicate(self) as soon as it is truthy; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            result = predicate(self)
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            try:
                await asyncio.wait_for(changed.wait(), min(remaining, 0.1))
            except asyncio.TimeoutError:
                pass

    # -- HTTP ---------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _outage_response(self, request: web.Request) -> web.StreamResponse:
        self.outage_hits += 1
        self._notify()
        if self._outage == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()  # nothing more to say on a dead connection
        if self._outage == "html":
            return web.Response(status=502, content_type="text/html",
                                text="<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
                                     "<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
                                     "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
        return self._error_response(ApiError(502, "Bad Gateway"))

    @staticmethod
    def _error_response(err: ApiError) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": err.status,
                                "description": err.description}
        if err.parameters:
            body["parameters"] = err.parameters
        return web.json_response(body, status=err.status)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._outage:
            return await self._outage_response(request)
        if request.match_info["token"] != self.token:
            self.unauthorized_hits += 1
            return self._error_response(ApiError(401, "Unauthorized"))
        name = self._method_names.get(request.match_info["method"].lower())
        if name is None:
            return self._error_response(ApiError(404, "Not Found"))
        try:
            params = await self._read_params(request)
        except ApiError as err:
            self.rejected.append((name, {}, err.status, err.description))
            return self._error_response(err)
        try:
            injected = self._take_injected(name)
            if injected is not None:
                raise injected
            result = self._methods[name](params, request)
            if asyncio.iscoroutine(result):
                result = await result
        except _OutageError:
            return await self._outage_response(request)
        except ApiError as err:
            self.rejected.append((name, params, err.status, err.description))
            self._notify()
            return self._error_response(err)
        if name.startswith("send"):
            # Telegram rings the members' phones for a new message unless asked not to.
            for sent in result if isinstance(result, list) else [result]:
                if isinstance(sent, dict) and "message_id" in sent:
                    stored = self._msgs.get((sent["chat"]["id"], sent["message_id"]))
                    if stored is not None:
                        stored.silent = bool(params.get("disable_notification"))
        if name != "getUpdates":
            self.calls.append((name, params))
        self._notify()
        if self.hold_answers is not None and name != "getUpdates":
            await self.hold_answers.wait()
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if self._outage:
            return await self._outage_response(request)
        if request.match_info["token"] != self.token:
            return self._error_response(ApiError(401, "Unauthorized"))
        for info in self._files.values():
            if info["file_path"] == request.match_info["path"]:
                return web.Response(body=info["content"] or b"",
                                    content_type=info["mime_type"] or "application/octet-stream")
        return self._error_response(ApiError(404, "Not Found"))

    def _take_injected(self, name: str) -> ApiError | None:
        for item in self._injected:
            if item["method"] == name and item["times"] > 0:
                item["times"] -= 1
                if item["times"] == 0:
                    self._injected.remove(item)
                return ApiError(item["status"], item["description"], item["parameters"])
        return None

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON encoded request") from None
                if isinstance(body, dict):
                    raw.update(body)
            else:
                post = await request.post()
                for key, value in post.items():
                    if isinstance(value, web.FileField):
                        raw[key] = {"filename": value.filename, "content": value.file.read(),
                                    "content_type": value.content_type}
                    else:
                        raw[key] = value
        params: dict[str, Any] = {}
        for key, value in raw.items():
            params[key] = self._decode_field(key, value)
        # resolve attach://name into the uploaded file
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                attached = params.get(value[len("attach://"):])
                if isinstance(attached, dict) and "content" in attached:
                    params[key] = attached
                    params.pop(value[len("attach://"):], None)
        return params

    @staticmethod
    def _decode_field(key: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if key in _INT_FIELDS:
            try:
                return int(value)
            except ValueError:
                if key == "chat_id":
                    return value  # "@username"
                raise _bad(f"invalid {key} specified") from None
        if key in _BOOL_FIELDS:
            return value.lower() in ("true", "1")
        if key in _JSON_FIELDS:
            try:
                return json.loads(value)
            except ValueError:
                if key == "reply_markup":
                    raise _bad("can't parse reply keyboard markup JSON object") from None
                raise _bad(f"can't parse {key} JSON object") from None
        return value

    # -- helpers ------------------------------------------------------------------------------

    def _queue(self, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": self._next_update_id, **payload}
        self._next_update_id += 1
        self.updates.append(update)
        self._notify()
        return update

    def _chat_obj(self, chat: _Chat) -> dict[str, Any]:
        if chat.type == "private":
            assert chat.user is not None
            obj = {"id": chat.id, "type": "private", "first_name": chat.user["first_name"]}
            if chat.user.get("username"):
                obj["username"] = chat.user["username"]
            return obj
        obj = {"id": chat.id, "type": chat.type, "title": chat.title}
        if chat.is_forum:
            obj["is_forum"] = True
        return obj

    def _chat(self, params: dict[str, Any]) -> _Chat:
        chat_id = params.get("chat_id")
        if chat_id in (None, ""):
            raise _bad("chat_id is empty")
        chat = self._chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            raise _bad("chat not found")
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _has_topics(self, chat: _Chat) -> bool:
        return chat.is_forum or (chat.type == "private" and self.has_topics_enabled)

    def _thread(self, chat: _Chat, params: dict[str, Any], sending: bool = True) -> int | None:
        thread_id = params.get("message_thread_id")
        if not thread_id:
            return None
        topic = chat.topics.get(thread_id)
        if topic is None or topic.deleted or not self._has_topics(chat):
            raise _bad("message thread not found")
        if sending and topic.closed:
            raise _bad("TOPIC_CLOSED")
        return thread_id

    def _topic(self, chat: _Chat, params: dict[str, Any]) -> _Topic:
        thread_id = params.get("message_thread_id")
        if not thread_id:
            raise _bad("message_thread_id is empty")
        topic = chat.topics.get(thread_id)
        if topic is None or topic.deleted:
            raise _bad("message thread not found")
        return topic

    def _bot_message(self, chat: _Chat, params: dict[str, Any], what: str) -> _Message:
        message_id = params.get("message_id")
        if not message_id:
            if params.get("inline_message_id"):
                raise _bad("inline messages are not supported by this fake")
            raise _bad("message_id is empty" if what != "edit" else "message to edit not found")
        msg = self._msgs.get((chat.id, message_id))
        if msg is None or msg.deleted:
            raise _bad(f"message to {what} not found")
        return msg

    def _format(self, text: Any, parse_mode: Any, entities: Any, limit: int,
                caption: bool) -> tuple[str, list[dict[str, Any]]]:
        text = text if isinstance(text, str) else ("" if text is None else str(text))
        mode = (parse_mode or "").strip()
        if mode.lower() == "html":
            try:
                plain, ents = parse_html(text, self.strict_ampersand)
            except HtmlError as exc:
                raise _bad(f"can't parse entities: {exc}") from None
        elif mode == "" or mode.lower() in ("markdown", "markdownv2"):
            plain, ents = text, list(entities or [])
        else:
            raise _bad("unsupported parse_mode")
        if not caption and not plain.strip():
            raise _bad("message text is empty")
        if len(plain) > limit:
            raise _bad("message caption is too long" if caption else "message is too long")
        return plain, ents

    @staticmethod
    def _check_markup(markup: Any, inline_only: bool = False) -> dict[str, Any] | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if inline_only or not ({"keyboard", "remove_keyboard", "force_reply"} & markup.keys()):
                raise _bad("can't parse inline keyboard: field \"inline_keyboard\" must be an Array")
            return markup
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad("can't parse inline keyboard: field \"inline_keyboard\" must be an Array of Arrays")
        for row in rows:
            for button in row:
                if not isinstance(button, dict):
                    raise _bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
                if not isinstance(button.get("text"), str) or not button["text"]:
                    raise _bad("can't parse inline keyboard button: Text must be non-empty")
                actions = [a for a in _BUTTON_ACTIONS if a in button]
                if not actions:
                    raise _bad("can't parse inline keyboard button: Text buttons are unallowed "
                               "in the inline keyboard")
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
                        raise _bad("BUTTON_DATA_INVALID")
                if "url" in button:
                    url = button["url"]
                    if not isinstance(url, str) or not re.match(r"^(https?://[^\s/]+|tg://\S+)", url):
                        raise _bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
        if not any(rows):
            return None  # an empty keyboard is no keyboard
        return markup

    @staticmethod
    def _same_markup(a: Any, b: Any) -> bool:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    def _rate_check(self, method: str, chat: _Chat | None) -> None:
        """Raise 429 when a counted call would exceed a window; else count it."""
        lim = self.limits
        if not lim.enabled or method not in lim.counted:
            return
        now = self.clock()
        rules: list[tuple[Any, int | None, float]] = [("global", lim.global_per_second,
                                                       lim.global_window)]
        if chat is not None and chat.type == "private":
            rules.append((("private", chat.id), lim.private_per_second, lim.private_window))
        elif chat is not None:
            rules.append((("group", chat.id), lim.group_per_minute, lim.group_window))
            rules.append((("group-second", chat.id), lim.group_per_second, 1.0))
        wait: float | None = None
        active = []
        for key, limit, window in rules:
            if limit is None:
                continue
            window *= self.window_scale
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            active.append(hits)
            if len(hits) >= limit:
                # admitted once the oldest len-limit+1 hits have left the window
                free_at = hits[len(hits) - limit] + window
                wait = max(wait or 0.0, free_at - now)
        if wait is not None:
            retry_after = max(1, math.ceil(wait - 1e-9))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}",
                           {"retry_after": retry_after})
        for hits in active:
            hits.append(now)

    def _store(self, chat: _Chat, thread_id: int | None, kind: str, fields: dict[str, Any], *,
               from_user: dict[str, Any] | None = None, reply: _Message | None = None,
               message_id: int | None = None) -> _Message:
        if message_id is None:
            message_id = chat.next_message_id
        chat.next_message_id = max(chat.next_message_id, message_id + 1)
        obj: dict[str, Any] = {"message_id": message_id,
                               "from": from_user or self.bot_user,
                               "chat": self._chat_obj(chat),
                               "date": int(time.time())}
        if thread_id is not None:
            obj["message_thread_id"] = thread_id
            obj["is_topic_message"] = True
            if reply is None and message_id != thread_id:
                reply = self._msgs.get((chat.id, thread_id))
        if reply is not None:
            obj["reply_to_message"] = {k: v for k, v in reply.obj.items() if k != "reply_to_message"}
        obj.update(fields)
        msg = _Message(chat_id=chat.id, message_id=message_id, thread_id=thread_id, kind=kind,
                       obj=obj, from_bot=from_user is None)
        self._msgs[(chat.id, message_id)] = msg
        return msg

    def _view(self, msg: _Message) -> dict[str, Any]:
        obj = msg.obj
        return {"message_id": msg.message_id, "chat_id": msg.chat_id, "thread_id": msg.thread_id,
                "text": obj.get("text", obj.get("caption", "")),
                "caption": obj.get("caption"), "raw": msg.raw, "parse_mode": msg.parse_mode,
                "entities": obj.get("entities", obj.get("caption_entities", [])),
                "reply_markup": obj.get("reply_markup"),
                "reply_to_message_id": (obj["reply_to_message"]["message_id"]
                                        if "reply_to_message" in obj
                                        and obj["reply_to_message"]["message_id"] != msg.thread_id
                                        else None),
                "document": dict(msg.document) if msg.document else None,
                "edits": msg.edits, "date": obj["date"], "silent": msg.silent}

    def _reply_target(self, chat: _Chat, params: dict[str, Any]) -> _Message | None:
        reply_params = params.get("reply_parameters") or {}
        reply_id = reply_params.get("message_id") or params.get("reply_to_message_id")
        if not reply_id:
            return None
        allow = reply_params.get("allow_sending_without_reply",
                                 params.get("allow_sending_without_reply", False))
        target = self._msgs.get((chat.id, reply_id))
        if target is None or target.deleted:
            if allow:
                return None
            raise _bad("message to be replied not found")
        return target

    @staticmethod
    def _command_entities(text: str) -> list[dict[str, Any]]:
        match = re.match(r"^/[A-Za-z0-9_]{1,64}(@[A-Za-z0-9_]{3,32})?", text)
        if not match:
            return []
        return [{"type": "bot_command", "offset": 0, "length": _utf16_len(match.group(0))}]

    def _new_topic(self, chat: _Chat, name: str, icon_color: int, emoji: str | None,
                   creator: dict[str, Any] | None = None) -> int:
        thread_id = chat.next_message_id
        chat.topics[thread_id] = _Topic(thread_id, name, icon_color, emoji)
        created: dict[str, Any] = {"name": name, "icon_color": icon_color}
        if emoji:
            created["icon_custom_emoji_id"] = emoji
        self._store(chat, thread_id, "service", {"forum_topic_created": created},
                    from_user=creator, message_id=thread_id)
        return thread_id

    def _service(self, chat: _Chat, thread_id: int, fields: dict[str, Any]) -> None:
        self._store(chat, thread_id, "service", fields)

    # -- methods ------------------------------------------------------------------------------

    def _get_me(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False, "can_connect_to_business": False,
                "has_main_web_app": False, "has_topics_enabled": self.has_topics_enabled,
                "allows_users_to_create_topics": False}

    def _delete_webhook(self, params: dict[str, Any], request: Any) -> bool:
        if params.get("drop_pending_updates"):
            self.updates.clear()
        return True

    def _get_webhook_info(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        return {"url": "", "has_custom_certificate": False,
                "pending_update_count": len(self.updates)}

    async def _get_updates(self, params: dict[str, Any], request: Any) -> list[dict[str, Any]]:
        offset = params.get("offset") or 0
        limit = params.get("limit") or 100
        if not 1 <= limit <= 100:
            limit = 100
        timeout = max(0, params.get("timeout") or 0)
        if offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        elif offset < 0:
            self.updates = self.updates[offset:]
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # wakes an older long poll, which then answers 409
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            if self._outage:
                raise _OutageError()
            if generation != self._poll_generation:
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure "
                                    "that only one bot instance is running")
            if self.updates or self._stopping:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return self.updates[:limit]

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        scope = scope or {"type": "default"}
        return json.dumps(scope, sort_keys=True), language_code or ""

    def _set_my_commands(self, params: dict[str, Any], request: Any) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands specified")
        clean = []
        for cmd in commands:
            if not isinstance(cmd, dict) or not _COMMAND_RE.match(str(cmd.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            description = cmd.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": cmd["command"], "description": description})
        self._commands[self._commands_key(params.get("scope"), params.get("language_code"))] = clean
        return True

    def _get_my_commands(self, params: dict[str, Any], request: Any) -> list[dict[str, str]]:
        return self.commands_for(params.get("scope"), params.get("language_code") or "")

    def _delete_my_commands(self, params: dict[str, Any], request: Any) -> bool:
        self._commands.pop(self._commands_key(params.get("scope"), params.get("language_code")), None)
        return True

    def _send_message(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        chat = self._chat(params)
        reply = self._reply_target(chat, params)
        if not params.get("message_thread_id") and reply is not None and reply.thread_id:
            params = {**params, "message_thread_id": reply.thread_id}
        thread_id = self._thread(chat, params)
        plain, entities = self._format(params.get("text"), params.get("parse_mode"),
                                       params.get("entities"), 4096, caption=False)
        markup = self._check_markup(params.get("reply_markup"))
        self._rate_check("sendMessage", chat)
        fields: dict[str, Any] = {"text": plain}
        if entities:
            fields["entities"] = entities
        if markup and "inline_keyboard" in markup:
            fields["reply_markup"] = markup
        msg = self._store(chat, thread_id, "text", fields, reply=reply)
        msg.raw, msg.parse_mode = params.get("text"), params.get("parse_mode")
        return msg.obj

    def _edit_message_text(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        chat = self._chat(params)
        msg = self._bot_message(chat, params, "edit")
        if not msg.from_bot or msg.kind == "service":
            raise _bad("message can't be edited")
        if msg.kind != "text":
            raise _bad("there is no text in the message to edit")
        plain, entities = self._format(params.get("text"), params.get("parse_mode"),
                                       params.get("entities"), 4096, caption=False)
        markup = self._check_markup(params.get("reply_markup"), inline_only=True)
        if (plain == msg.obj.get("text") and entities == msg.obj.get("entities", [])
                and self._same_markup(markup, msg.obj.get("reply_markup"))):
            raise ApiError(400, NOT_MODIFIED)
        self._rate_check("editMessageText", chat)
        msg.obj["text"] = plain
        msg.obj.pop("entities", None)
        if entities:
            msg.obj["entities"] = entities
        msg.obj.pop("reply_markup", None)
        if markup:
            msg.obj["reply_markup"] = markup
        msg.obj["edit_date"] = int(time.time())
        msg.raw, msg.parse_mode = params.get("text"), params.get("parse_mode")
        msg.edits += 1
        return msg.obj

    def _edit_message_reply_markup(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        chat = self._chat(params)
        msg = self._bot_message(chat, params, "edit")
        if not msg.from_bot or msg.kind == "service":
            raise _bad("message can't be edited")
        markup = self._check_markup(params.get("reply_markup"), inline_only=True)
        if self._same_markup(markup, msg.obj.get("reply_markup")):
            raise ApiError(400, NOT_MODIFIED)
        self._rate_check("editMessageReplyMarkup", chat)
        msg.obj.pop("reply_markup", None)
        if markup:
            msg.obj["reply_markup"] = markup
        msg.obj["edit_date"] = int(time.time())
        msg.edits += 1
        return msg.obj

    def _delete_message(self, params: dict[str, Any], request: Any) -> bool:
        chat = self._chat(params)
        msg = self._bot_message(chat, params, "delete")
        if msg.kind == "service" and msg.message_id in chat.topics:
            raise _bad("message can't be deleted")
        msg.deleted = True
        if msg.message_id in chat.pinned:
            chat.pinned.remove(msg.message_id)
        return True

    def _send_document(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        chat = self._chat(params)
        reply = self._reply_target(chat, params)
        if not params.get("message_thread_id") and reply is not None and reply.thread_id:
            params = {**params, "message_thread_id": reply.thread_id}
        thread_id = self._thread(chat, params)
        caption, caption_entities = self._format(params.get("caption"), params.get("parse_mode"),
                                                 params.get("caption_entities"), 1024, caption=True)
        markup = self._check_markup(params.get("reply_markup"))
        document = params.get("document")
        if isinstance(document, dict) and "content" in document:
            content = document["content"]
            if not content:
                raise _bad("file must be non-empty")
            if len(content) > 50 * 1024 * 1024:
                raise ApiError(413, "Request Entity Too Large")
            file_name = document["filename"] or "document"
            mime = (mimetypes.guess_type(file_name)[0]
                    or (document["content_type"] if document["content_type"] not in
                        (None, "application/octet-stream") else None)
                    or "application/octet-stream")
            info = None
        elif isinstance(document, str) and document in self._files:
            info = self._files[document]
            content, file_name, mime = info["content"], info["file_name"], info["mime_type"]
        elif isinstance(document, str) and re.match(r"^https?://", document):
            content, file_name, mime, info = None, document.rsplit("/", 1)[-1] or "document", None, None
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        self._rate_check("sendDocument", chat)
        if info is None:
            file_id = "BQACAgIAAx" + secrets.token_urlsafe(24)
            info = {"file_id": file_id, "file_unique_id": "AgAD" + secrets.token_urlsafe(8),
                    "file_name": file_name, "mime_type": mime, "content": content,
                    "file_size": len(content) if content is not None else None,
                    "file_path": f"documents/file_{len(self._files)}{_ext(file_name)}"}
            self._files[file_id] = info
        doc = {"file_id": info["file_id"], "file_unique_id": info["file_unique_id"],
               "file_name": info["file_name"]}
        if info["mime_type"]:
            doc["mime_type"] = info["mime_type"]
        if info["file_size"] is not None:
            doc["file_size"] = info["file_size"]
        fields: dict[str, Any] = {"document": doc}
        if caption:
            fields["caption"] = caption
        if caption_entities:
            fields["caption_entities"] = caption_entities
        if markup and "inline_keyboard" in markup:
            fields["reply_markup"] = markup
        msg = self._store(chat, thread_id, "document", fields, reply=reply)
        msg.raw, msg.parse_mode = params.get("caption"), params.get("parse_mode")
        msg.document = {"file_name": info["file_name"], "mime_type": info["mime_type"],
                        "content": info["content"], "file_id": info["file_id"],
                        "size": info["file_size"]}
        return msg.obj

    def _get_file(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        info = self._files.get(params.get("file_id") or "")
        if info is None:
            raise _bad("invalid file_id")
        return self._get_file_limited(info)

    def _create_forum_topic(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        chat = self._chat(params)
        if not self._has_topics(chat):
            raise _bad("the chat is not a forum")
        if chat.type != "private" and not chat.can_manage_topics:
            raise _bad("not enough rights to create a topic")
        name = params.get("name") or ""
        if not name.strip():
            raise _bad("TOPIC_TITLE_EMPTY")
        if len(name) > 128:
            raise _bad("TOPIC_NAME_INVALID")
        color = params.get("icon_color") or TOPIC_COLORS[0]
        if color not in TOPIC_COLORS:
            raise _bad("ICON_COLOR_INVALID")
        self._rate_check("createForumTopic", chat)
        emoji = params.get("icon_custom_emoji_id") or None
        thread_id = self._new_topic(chat, name, color, emoji)
        result: dict[str, Any] = {"message_thread_id": thread_id, "name": name, "icon_color": color}
        if emoji:
            result["icon_custom_emoji_id"] = emoji
        return result

    def _edit_forum_topic(self, params: dict[str, Any], request: Any) -> bool:
        chat = self._chat(params)
        topic = self._topic(chat, params)
        name = params.get("name")
        if name is not None and len(name) > 128:
            raise _bad("TOPIC_NAME_INVALID")
        emoji = params.get("icon_custom_emoji_id")
        changes: dict[str, Any] = {}
        if name and name != topic.name:
            changes["name"] = name
        if emoji is not None and (emoji or None) != topic.icon_custom_emoji_id:
            changes["icon_custom_emoji_id"] = emoji
        if not changes:
            raise _bad("TOPIC_NOT_MODIFIED")
        self._rate_check("editForumTopic", chat)
        if "name" in changes:
            topic.name = changes["name"]
        if "icon_custom_emoji_id" in changes:
            topic.icon_custom_emoji_id = changes["icon_custom_emoji_id"] or None
        self._service(chat, topic.thread_id, {"forum_topic_edited": changes})
        return True

    def _close_forum_topic(self, params: dict[str, Any], request: Any) -> bool:
        chat = self._chat(params)
        topic = self._topic(chat, params)
        if topic.closed:
            raise _bad("TOPIC_NOT_MODIFIED")
        self._rate_check("closeForumTopic", chat)
        topic.closed = True
        self._service(chat, topic.thread_id, {"forum_topic_closed": {}})
        return True

    def _reopen_forum_topic(self, params: dict[str, Any], request: Any) -> bool:
        chat = self._chat(params)
        topic = self._topic(chat, params)
        if not topic.closed:
            raise _bad("TOPIC_NOT_MODIFIED")
        self._rate_check("reopenForumTopic", chat)
        topic.closed = False
        self._service(chat, topic.thread_id, {"forum_topic_reopened": {}})
        return True

    def _delete_forum_topic(self, params: dict[str, Any], request: Any) -> bool:
        chat = self._chat(params)
        topic = self._topic(chat, params)
        topic.deleted = True
        for msg in self._msgs.values():
            if msg.chat_id == chat.id and msg.thread_id == topic.thread_id:
                msg.deleted = True
        chat.pinned = [m for m in chat.pinned if not self._msgs[(chat.id, m)].deleted]
        return True

    def _pin_chat_message(self, params: dict[str, Any], request: Any) -> bool:
        chat = self._chat(params)
        msg = self._bot_message(chat, params, "pin")
        self._rate_check("pinChatMessage", chat)
        if msg.message_id in chat.pinned:
            chat.pinned.remove(msg.message_id)
        chat.pinned.append(msg.message_id)
        return True

    def _unpin_chat_message(self, params: dict[str, Any], request: Any) -> bool:
        chat = self._chat(params)
        if params.get("message_id"):
            msg = self._bot_message(chat, params, "unpin")
            if msg.message_id in chat.pinned:
                chat.pinned.remove(msg.message_id)
        elif chat.pinned:
            chat.pinned.pop()
        return True

    def _answer_callback_query(self, params: dict[str, Any], request: Any) -> bool:
        query_id = params.get("callback_query_id")
        if query_id not in self._callbacks:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if text is not None and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        query = self._callbacks.pop(query_id)
        self.answered_callbacks.append({
            "callback_query_id": query_id, "text": text,
            "show_alert": bool(params.get("show_alert")), "url": params.get("url"),
            "cache_time": params.get("cache_time"), "data": query.get("data"),
            "from": query["from"], "message_id": query["message"]["message_id"]})
        return True

    def _get_chat(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        chat = self._chat(params)
        return {**self._chat_obj(chat), "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                        "unique_gifts": False, "premium_subscription": False,
                                        "gifts_from_channels": False}}

    def _get_chat_member(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        """A ChatMember as Telegram returns it: the bot's own role (an administrator carries
        every can_* right, can_manage_topics among them), "member" for a user seen in the
        chat, "left" for a user known elsewhere, and "user not found" for anyone else."""
        chat = self._chat(params)
        user_id = params.get("user_id")
        if not isinstance(user_id, int):
            raise _bad("invalid user_id specified")
        if user_id == self.bot_id:
            if chat.type == "private" or chat.bot_status != "administrator":
                status = "member" if chat.type == "private" else chat.bot_status
                return {"user": self.bot_user, "status": status}
            rights = {name: True for name in (
                "can_manage_chat", "can_change_info", "can_delete_messages", "can_invite_users",
                "can_restrict_members", "can_pin_messages", "can_promote_members",
                "can_manage_video_chats", "can_post_stories", "can_edit_stories", "can_delete_stories",
                "can_send_welcome_messages")}
            return {"user": self.bot_user, "status": "administrator", "can_be_edited": False,
                    "is_anonymous": False, **rights, "can_manage_topics": chat.can_manage_topics}
        if chat.type == "private" and chat.user and chat.user["id"] == user_id:
            return {"user": chat.user, "status": "member"}
        if user_id in chat.members:
            return {"user": chat.members[user_id], "status": "member"}
        for other in self._chats.values():
            known = other.members.get(user_id) or (other.user if other.id == user_id else None)
            if known:
                return {"user": known, "status": "left"}
        raise _bad("user not found")

    def _send_chat_action(self, params: dict[str, Any], request: Any) -> bool:
        chat = self._chat(params)
        self._thread(chat, params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True


def _ext(file_name: str) -> str:
    dot = file_name.rfind(".")
    return file_name[dot:] if 0 < dot and len(file_name) - dot <= 8 else ""
