"""Bot text through gettext (aiogram's I18n, catalogs in locales/).

The `.po` files are the source and the only thing shipped: they are compiled
with Babel in memory at start-up, so neither the build nor a person has to,
and an install directory that is read-only (pip, pipx) works as well as a
checkout. A person's locale comes from their Telegram `language_code`; text
sent on no one's behalf (the mirror) uses `SM_TELEGRAM_LOCALE` (default `en`).
"""

from __future__ import annotations

import gettext
import io
from pathlib import Path

from aiogram.utils.i18n import I18n

from locales import PATH as LOCALES

DOMAIN = "sm"


def compile_catalog(po: Path) -> gettext.GNUTranslations:
    """One `.po` file as a loaded translation, compiled in memory."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as fh:
        catalog = read_po(fh)
    mo = io.BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return gettext.GNUTranslations(mo)


class PoI18n(I18n):
    """aiogram's I18n, reading the `.po` sources instead of compiled `.mo` files."""

    def find_locales(self) -> dict[str, gettext.GNUTranslations]:
        return {po.parent.parent.name: compile_catalog(po)
                for po in sorted(Path(self.path).glob(f"*/LC_MESSAGES/{self.domain}.po"))}


# aiogram gives each subclass a context variable of its own, but `gettext` (`_`)
# reads I18n's: share it, or every `_()` would find no context.
PoI18n._ContextInstanceMixin__context_instance = I18n._ContextInstanceMixin__context_instance  # type: ignore[attr-defined]


def make_i18n(default_locale: str = "en") -> I18n:
    return PoI18n(path=LOCALES, default_locale=default_locale, domain=DOMAIN)
