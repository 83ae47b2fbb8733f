"""The Telegram door's settings: `SM_TELEGRAM_*`, or the `telegram:` section of config.yaml.

Read through the same sources as the engine's (core/config.py): the
environment, then `.env`, then config.yaml. The bot runs headless when the
token is empty.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from typing_extensions import Annotated

from core.config import SmSettings


def _id_list(value: Any) -> Any:
    """Accept a JSON list, a comma-separated string, a single id or a list."""
    if value is None or value == "":
        return []
    if isinstance(value, (int, float)):
        return [int(value)]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [int(part) for part in text.split(",") if part.strip()]
    return value


class TelegramSettings(SmSettings):
    model_config = SettingsConfigDict(env_prefix="SM_TELEGRAM_")
    yaml_section: ClassVar[str | None] = "telegram"

    # The bot's token from @BotFather; empty: no bot (sm-bot runs headless).
    token: str = Field(default="", repr=False)
    # The forum group (or private chat) where sessions are mirrored.
    chat_id: int | None = None
    api_url: str = "https://api.telegram.org"
    allowed_chat_ids: Annotated[list[int], NoDecode] = []
    allowed_user_ids: Annotated[list[int], NoDecode] = []
    # /new may only start agents in directories under these roots (default: your home).
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default=[Path("~")], validate_default=True)  # so the default "~" is expanded too
    # Provider that /new starts.
    default_provider: str = "claude"
    # Language of mirrored text (a person's own replies follow their Telegram language).
    locale: str = "en"
    # The largest file downloaded from the phone (MB): the cloud Bot API's getFile serves
    # 20; a local Bot API server (its getFile answers a local path) up to 2000.
    max_download_mb: float = Field(20.0, gt=0)
    # Telegram's group limit: this many sends per window (seconds), all topics together.
    group_per_window: int = 20
    rate_window: float = 60.0
    # Of those, this many are kept for what needs you (prompts, questions, failures,
    # deaths): conversation and chatter never use them.
    actionable_reserve: int = 5

    # A topic's title carries an emoji while its session needs you (waiting, limited,
    # errored, lost, dead). Each rename posts "topic edited" into the topic, so at most
    # one per topic per this many seconds; the latest state wins.
    rename_interval: float = Field(60.0, ge=0)
    # Post each tool call of the agents as it starts ("🔧 Bash: npm test"), coalesced;
    # off by default. A topic's card can turn it on or off for that topic alone.
    verbose: bool = False
    # The topic of a dead session closes after this many seconds; /list reopens it.
    close_dead_after: float = Field(600.0, ge=0)
    # Live screenshots: the photo is replaced at most this often (seconds), only when the
    # screen changed, and the view stops after live_max seconds (or when the agent is idle).
    live_interval: float = Field(5.0, gt=0)
    live_max: float = Field(300.0, gt=0)
    # A person's message waits while its agent is busy: after this many seconds it gets 👀.
    busy_reaction_after: float = Field(30.0, ge=0)

    # Telegram unreachable: retry getMe and polling with backoff up to this many seconds.
    retry_max: float = 60.0
    # A token Telegram refuses (401): ask again this often (seconds), in case it is fixed.
    refused_retry: float = 600.0

    def allowed_users(self) -> set[int]:
        """Who may use the bot: the user list, and the person of each private chat on the
        chat list (a positive chat id is a user's id), as the original project read it."""
        return set(self.allowed_user_ids) | {c for c in self.allowed_chat_ids if c > 0}

    def allowed_chats(self) -> set[int]:
        """Where the bot listens: the chat list and the chat sessions are mirrored to."""
        return set(self.allowed_chat_ids) | ({self.chat_id} if self.chat_id else set())

    def allow_list_problem(self) -> str | None:
        """Why nobody can use the bot, naming the empty list; None when someone can."""
        users, chats = self.allowed_users(), self.allowed_chats()
        if not users and not chats:
            return ("the Telegram allow-lists are empty: the bot answers no one "
                    "(set SM_TELEGRAM_ALLOWED_USER_IDS to your user id, and SM_TELEGRAM_CHAT_ID)")
        if not users:
            return ("SM_TELEGRAM_ALLOWED_USER_IDS (telegram.allowed_user_ids) is empty: the bot answers no one "
                    "in the allowed chats (add your Telegram user id)")
        if not chats:
            return ("no chat is allowed: SM_TELEGRAM_CHAT_ID and SM_TELEGRAM_ALLOWED_CHAT_IDS "
                    "(telegram.chat_id, telegram.allowed_chat_ids) are both empty, so the bot answers no one")
        return None

    @field_validator("allowed_chat_ids", "allowed_user_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: Any) -> Any:
        return _id_list(value)

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _parse_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p for p in text.split(os.pathsep) if p]
        return value

    @field_validator("allowed_roots", mode="after")
    @classmethod
    def _expand_roots(cls, value: list[Path]) -> list[Path]:
        return [p.expanduser().resolve() for p in value]


def load_telegram_settings(**overrides: Any) -> TelegramSettings:
    """The settings, or a ValueError naming each bad one as the user sets it."""
    try:
        return TelegramSettings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"])
            field = str(err["loc"][0]) if err["loc"] else ""
            problems.append(f"telegram.{name} ({TelegramSettings.env_name(field)}): {err['msg']}"
                            f" (got {err.get('input')!r})")
        raise ValueError("; ".join(problems)) from None
