"""The Telegram door: the aiogram bot, the mirror and the outbox.

`frontend.TelegramFrontEnd` is what `bot/main.py` starts beside the API. It
reaches the engine only through its public methods, and keeps its own tables
(topics, outbox, mirrored messages, permission prompts) through the store's
per-owner migrations (`migrations.sql` here).
"""
