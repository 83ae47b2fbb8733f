"""The bot's routers: one audience each."""

from aiogram import Router

from bot.telegram.handlers import buttons, commands, topic_messages


def routers() -> list[Router]:
    # Commands first, so "/status" in a topic is a command, not input.
    return [commands.router, buttons.router, topic_messages.router]
