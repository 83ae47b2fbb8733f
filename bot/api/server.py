"""Running the API beside the bot in one event loop (aiohttp's AppRunner)."""

from __future__ import annotations

import logging
import os

from aiohttp import web

from bot.api.app import build_app
from core.engine import Engine

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        settings = self._engine.settings
        self._runner = web.AppRunner(build_app(self._engine), access_log=None,
                                     handle_signals=False, shutdown_timeout=2)
        await self._runner.setup()
        path = settings.socket_path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()  # a stale socket from a crashed server
        # Create the socket with no access for group/others from the start,
        # then pin it to 0600.
        old = os.umask(0o177)
        try:
            await web.UnixSite(self._runner, str(path)).start()
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        log.info("API listening on %s", path)
        if settings.server_tcp:
            await web.TCPSite(self._runner, settings.server_host, settings.server_port).start()
            log.info("API also on http://%s:%d", settings.server_host, settings.server_port)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
            # asyncio leaves the socket file behind; a CLI would then be told
            # "connection refused" instead of "not running".
            self._engine.settings.socket_path.unlink(missing_ok=True)
