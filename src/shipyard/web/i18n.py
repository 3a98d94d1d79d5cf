"""Interface languages: English (the source strings) and Simplified Chinese.

Catalogs are gettext ``.po`` files under ``web/locale/<lang>/`` (several files per language
are merged, one per area of the UI); they are read with Babel at start-up, so there is no
compile step. The language is the user's choice, else the ``lang`` cookie, else the
browser's ``Accept-Language``."""

from __future__ import annotations

import gettext
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALES = {"en": "English", "zh_CN": "简体中文"}
DEFAULT = "en"
LOCALE_DIR = Path(__file__).parent / "locale"


class _Catalog(gettext.NullTranslations):
    def __init__(self, messages: dict[str, str]) -> None:
        super().__init__()
        self._messages = messages

    def gettext(self, message: str) -> str:
        return self._messages.get(message) or message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.gettext(singular if n == 1 else plural)


@cache
def translations(lang: str) -> gettext.NullTranslations:
    if lang == DEFAULT or lang not in LOCALES:
        return gettext.NullTranslations()
    messages: dict[str, str] = {}
    for po in sorted((LOCALE_DIR / lang).glob("*.po")):
        with po.open("rb") as f:
            for message in read_po(f, locale=lang):
                if message.id and message.string and not message.fuzzy:
                    key = message.id if isinstance(message.id, str) else message.id[0]
                    value = message.string if isinstance(message.string, str) \
                        else message.string[0]
                    messages[key] = value
    return _Catalog(messages)


def negotiate(accept_language: str | None, cookie: str | None, preferred: str | None) -> str:
    """The language to speak: the user's setting, the cookie, or the browser's wish."""
    for choice in (preferred, cookie):
        if choice in LOCALES:
            return choice  # type: ignore[return-value]
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower().replace("-", "_")
        if tag.startswith("zh"):
            return "zh_CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT
