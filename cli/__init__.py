"""The `sm` command: a thin client of the local API."""
