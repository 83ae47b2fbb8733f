"""The local API (aiohttp) that serves the `sm` CLI and the hooks."""
