"""The bot's catalogs: every string the bot says exists in each language."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent


def test_every_bot_string_is_in_the_catalogs_and_translated(tmp_path: Path) -> None:
    template = tmp_path / "sm.pot"
    subprocess.run([str(Path(sys.executable).parent / "pybabel"), "extract", "-k", "_", "-o", str(template),
                    str(ROOT / "bot")], check=True, capture_output=True)
    wanted = {m.id for m in read_po(template.open("rb")) if m.id}
    assert len(wanted) > 40
    for locale in ("en", "ru"):
        catalog = read_po((ROOT / "locales" / locale / "LC_MESSAGES" / "sm.po").open("rb"))
        have = {m.id for m in catalog if m.id}
        assert wanted <= have, f"{locale}: missing {sorted(wanted - have)}"
    untranslated = [m.id for m in read_po((ROOT / "locales/ru/LC_MESSAGES/sm.po").open("rb"))
                    if m.id and not m.string]
    assert untranslated == []


def test_catalogs_load_from_the_po_files_alone_and_reach_gettext(tmp_path: Path) -> None:
    # An installed sm ships only the .po files (a read-only site-packages gets no .mo).
    import shutil

    from aiogram.utils.i18n import gettext as _

    from bot.telegram.i18n import DOMAIN, PoI18n
    from locales import PATH

    for po in PATH.glob("*/LC_MESSAGES/sm.po"):
        target = tmp_path / po.relative_to(PATH)
        target.parent.mkdir(parents=True)
        shutil.copy(po, target)
    tmp_path.chmod(0o555)  # nothing can be compiled beside them
    i18n = PoI18n(path=tmp_path, default_locale="ru", domain=DOMAIN)
    assert sorted(i18n.locales) == ["en", "ru"]
    assert list(tmp_path.glob("*/LC_MESSAGES/*.mo")) == []
    with i18n.context():
        assert _("Allow") == "Разрешить"
        with i18n.use_locale("en"):
            assert _("Allow") == "Allow"
