"""Bot text through gettext (aiogram's I18n, catalogs in locales/).

The `.po` files are the source; their `.mo` files are compiled with Babel
when missing or older, at start-up, so neither the build nor a person has to.
A person's locale comes from their Telegram `language_code`; text sent on no
one's behalf (the mirror) uses `SM_TELEGRAM_LOCALE` (default `en`).
"""

from __future__ import annotations

from pathlib import Path

from aiogram.utils.i18n import I18n

LOCALES = Path(__file__).resolve().parents[2] / "locales"
DOMAIN = "sm"


def compile_catalogs(path: Path = LOCALES) -> None:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in path.glob(f"*/LC_MESSAGES/{DOMAIN}.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as fh:
            catalog = read_po(fh)
        with mo.open("wb") as fh:
            write_mo(fh, catalog)


def make_i18n(default_locale: str = "en") -> I18n:
    compile_catalogs()
    return I18n(path=LOCALES, default_locale=default_locale, domain=DOMAIN)
