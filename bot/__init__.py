"""The main process: the aiogram bot, with the engine and the local API in its event loop."""
