"""sm's version, from the installed package's metadata (pyproject.toml's `version`)."""

from __future__ import annotations

DISTRIBUTION = "sm"


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"
