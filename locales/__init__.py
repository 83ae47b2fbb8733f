"""The bot's gettext catalogs (`<lang>/LC_MESSAGES/sm.po`), shipped as package data.

A package only so that the catalogs are installed with the code and found
from it (`locales.PATH`), wherever the code that reads them lives.
"""

from pathlib import Path

PATH = Path(__file__).resolve().parent
