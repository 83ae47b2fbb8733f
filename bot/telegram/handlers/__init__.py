"""The bot's routers: one audience each."""

from aiogram import Router

from bot.telegram.handlers import buttons, commands, files, topic_messages


def routers() -> list[Router]:
    # Commands first, so "/status" in a topic is a command, not input; files before
    # buttons, whose last handler takes every press it does not know.
    return [commands.router, files.router, buttons.router, topic_messages.router]
