"""The sm engine: sessions in tmux, their state, the durable message queue.

Nothing in here knows about Telegram, HTTP or terminals; the front ends
(`bot/`, `bot/api/`, `cli/`) reach it through `core.engine.Engine`.
"""
