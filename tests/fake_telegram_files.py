"""Files in the fake Bot API: what a person sends (photos in several sizes, documents, voice,
audio, video, albums) and what the bot sends (sendPhoto, sendMediaGroup), with Telegram's limits.

Mixed into FakeTelegram (tests/fake_telegram.py). Limits modelled:

* getFile serves at most 20 MB: ``Bad Request: file is too big`` (the real string). With
  ``local_files_dir`` set, the fake acts as a local Bot API server (``--local``): getFile writes
  the file there and answers its absolute path, with no size limit.
* uploads over 50 MB: HTTP 413 ``Request Entity Too Large``; sendPhoto over 10 MB:
  ``Bad Request: PHOTO_SAVE_FILE_INVALID``; sides over 10000 together or a ratio over 20:
  ``Bad Request: PHOTO_INVALID_DIMENSIONS``.
* sendMediaGroup: 2-10 items, else ``Bad Request: wrong number of media in the album``
  (wording not verified against production); documents only with documents:
  ``Bad Request: document can't be mixed with other media types`` (likewise).
"""

from __future__ import annotations

import io
import json
import mimetypes
import secrets
from pathlib import Path
from typing import Any

MB = 1024 * 1024
DOWNLOAD_MAX = 20 * MB
UPLOAD_MAX = 50 * MB
PHOTO_MAX = 10 * MB


def _image_size(content: bytes) -> tuple[int, int]:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(content)) as image:
            return image.size
    except Exception:
        return 1280, 960


class FileMethods:
    local_files_dir: Path | None = None

    def _file_methods(self) -> dict[str, Any]:
        return {"sendPhoto": self._send_photo, "sendMediaGroup": self._send_media_group}

    # -- what a person sends ------------------------------------------------------------

    def _register_file(self, content: bytes, file_name: str | None, mime: str | None,
                       folder: str, size: int | None = None) -> dict[str, Any]:
        file_id = "AgAC" + secrets.token_urlsafe(24)
        ext = Path(file_name or "").suffix[:8]
        info = {"file_id": file_id, "file_unique_id": "AQAD" + secrets.token_urlsafe(8),
                "file_name": file_name, "mime_type": mime, "content": content,
                "file_size": size if size is not None else len(content),
                "file_path": f"{folder}/file_{len(self._files)}{ext}"}  # type: ignore[attr-defined]
        self._files[file_id] = info  # type: ignore[attr-defined]
        return info

    def send_media(self, chat_id: int, user: dict[str, Any], kind: str, content: bytes, *,
                   file_name: str | None = None, mime_type: str | None = None, caption: str | None = None,
                   thread_id: int | None = None, reply_to_message_id: int | None = None,
                   media_group_id: str | None = None) -> dict[str, Any]:
        """Queue a person's photo, document, audio, voice or video message, as Telegram shapes it.

        A photo comes in three sizes (two thumbnails, then ``content`` as the largest)."""
        chat = self._chats.get(chat_id)  # type: ignore[attr-defined]
        if chat is None:
            raise ValueError(f"no chat {chat_id}; add it first")
        reply = None
        if reply_to_message_id is not None:
            reply = self._msgs[(chat_id, reply_to_message_id)]  # type: ignore[attr-defined]
            thread_id = thread_id or reply.thread_id
        mime = mime_type or (mimetypes.guess_type(file_name or "")[0] if file_name else None)
        obj: dict[str, Any] = {}
        if kind == "photo":
            width, height = _image_size(content)
            sizes = []
            for scale, body in ((90, b"thumb-s" + content[:16]), (320, b"thumb-m" + content[:64]), (0, content)):
                if scale and scale >= width:
                    continue  # no thumbnail as big as the photo
                info = self._register_file(body, None, "image/jpeg", "photos")
                w = scale or width
                h = round(height * w / width) if scale else height
                sizes.append({"file_id": info["file_id"], "file_unique_id": info["file_unique_id"],
                              "file_size": info["file_size"], "width": w, "height": h})
            obj["photo"] = sizes
        elif kind in ("document", "audio", "video", "voice"):
            folder = {"document": "documents", "audio": "music", "video": "videos", "voice": "voice"}[kind]
            if kind == "voice":
                mime = mime or "audio/ogg"
            info = self._register_file(content, file_name, mime, folder)
            media: dict[str, Any] = {"file_id": info["file_id"], "file_unique_id": info["file_unique_id"],
                                     "file_size": info["file_size"]}
            if file_name and kind != "voice":
                media["file_name"] = file_name
            if mime:
                media["mime_type"] = mime
            if kind in ("audio", "video", "voice"):
                media["duration"] = 3
            if kind == "video":
                media.update(width=640, height=480)
            obj[kind] = media
        else:
            raise ValueError(f"unknown kind {kind}")
        if caption:
            obj["caption"] = caption
        if media_group_id:
            obj["media_group_id"] = media_group_id
        chat.members.setdefault(user["id"], user)
        msg = self._store(chat, thread_id, "user", obj, from_user=user, reply=reply)  # type: ignore[attr-defined]
        self._queue({"message": json.loads(json.dumps(msg.obj))})  # type: ignore[attr-defined]
        return msg.obj

    def _get_file_limited(self, info: dict[str, Any]) -> dict[str, Any]:
        """getFile's answer for a known file: 20 MB at most from the cloud; a local path when local."""
        from fake_telegram import _bad

        result = {"file_id": info["file_id"], "file_unique_id": info["file_unique_id"]}
        if info["file_size"] is not None:
            result["file_size"] = info["file_size"]
        if self.local_files_dir is not None:
            path = self.local_files_dir / info["file_path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(info["content"] or b"")
            result["file_path"] = str(path)
            return result
        if (info["file_size"] or 0) > DOWNLOAD_MAX:
            raise _bad("file is too big")
        result["file_path"] = info["file_path"]
        return result

    # -- what the bot sends -------------------------------------------------------------

    def _upload(self, value: Any, what: str) -> tuple[bytes, str]:
        from fake_telegram import ApiError, _bad

        if not (isinstance(value, dict) and "content" in value):
            raise _bad(f"wrong file identifier/HTTP URL specified ({what})")
        content = value["content"]
        if not content:
            raise _bad("file must be non-empty")
        if len(content) > UPLOAD_MAX:
            raise ApiError(413, "Request Entity Too Large")
        return content, value.get("filename") or what

    def _photo_checks(self, content: bytes) -> tuple[int, int]:
        from fake_telegram import _bad

        if len(content) > PHOTO_MAX:
            raise _bad("PHOTO_SAVE_FILE_INVALID")
        width, height = _image_size(content)
        if width + height > 10000 or max(width, height) > 20 * min(width, height):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        return width, height

    def _bot_file(self, chat: Any, thread_id: int | None, kind: str, content: bytes, name: str,
                  caption: str | None, entities: list[Any], group: str | None = None) -> Any:
        if kind == "photo":
            width, height = self._photo_checks(content)
            info = self._register_file(content, None, "image/jpeg", "photos")
            fields: dict[str, Any] = {"photo": [{"file_id": info["file_id"], "file_unique_id": info["file_unique_id"],
                                                 "file_size": info["file_size"], "width": width, "height": height}]}
        else:
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            info = self._register_file(content, name, mime, "documents")
            fields = {"document": {"file_id": info["file_id"], "file_unique_id": info["file_unique_id"],
                                   "file_name": name, "mime_type": mime, "file_size": info["file_size"]}}
        if caption:
            fields["caption"] = caption
        if entities:
            fields["caption_entities"] = entities
        if group:
            fields["media_group_id"] = group
        msg = self._store(chat, thread_id, kind, fields)  # type: ignore[attr-defined]
        msg.document = {"file_name": name, "mime_type": info["mime_type"], "content": content,
                        "file_id": info["file_id"], "size": len(content), "kind": kind, "media_group_id": group}
        return msg

    def _send_photo(self, params: dict[str, Any], request: Any) -> dict[str, Any]:
        chat = self._chat(params)  # type: ignore[attr-defined]
        thread_id = self._thread(chat, params)  # type: ignore[attr-defined]
        caption, entities = self._format(params.get("caption"), params.get("parse_mode"),  # type: ignore[attr-defined]
                                         params.get("caption_entities"), 1024, caption=True)
        content, name = self._upload(params.get("photo"), "photo")
        self._photo_checks(content)
        self._rate_check("sendPhoto", chat)  # type: ignore[attr-defined]
        markup = self._check_markup(params.get("reply_markup"))  # type: ignore[attr-defined]
        msg = self._bot_file(chat, thread_id, "photo", content, name, caption, entities)
        msg.raw, msg.parse_mode = params.get("caption"), params.get("parse_mode")
        if markup and "inline_keyboard" in markup:
            msg.obj["reply_markup"] = markup
        return msg.obj

    def _send_media_group(self, params: dict[str, Any], request: Any) -> list[dict[str, Any]]:
        from fake_telegram import _bad

        chat = self._chat(params)  # type: ignore[attr-defined]
        thread_id = self._thread(chat, params)  # type: ignore[attr-defined]
        media = params.get("media")
        if isinstance(media, str):
            try:
                media = json.loads(media)
            except ValueError:
                raise _bad("can't parse media JSON object") from None
        if not isinstance(media, list):
            raise _bad("media to send are not specified")
        if not 2 <= len(media) <= 10:
            raise _bad("wrong number of media in the album")
        kinds = {m.get("type") for m in media if isinstance(m, dict)}
        if len(kinds) != 1 and ("document" in kinds or "audio" in kinds):
            raise _bad("document can't be mixed with other media types")
        items = []
        for n, m in enumerate(media):
            ref = m.get("media", "")
            value = params.get(ref[len("attach://"):]) if isinstance(ref, str) and ref.startswith("attach://") else ref
            content, name = self._upload(value, f"media #{n + 1}")
            caption, entities = self._format(m.get("caption"), m.get("parse_mode") or params.get("parse_mode"),  # type: ignore[attr-defined]
                                             m.get("caption_entities"), 1024, caption=True)
            if m.get("type") == "photo":
                self._photo_checks(content)
            items.append((m.get("type"), content, name, caption, entities))
        self._rate_check("sendMediaGroup", chat)  # type: ignore[attr-defined]
        group = str(secrets.randbits(60))
        return [self._bot_file(chat, thread_id, kind, content, name, caption, entities, group).obj
                for kind, content, name, caption, entities in items]
