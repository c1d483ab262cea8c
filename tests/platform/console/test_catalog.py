"""Every word of the console in both languages: the catalogues hold the same keys with the same
placeholders, every key a template or script names exists, and the language of a request is
chosen as the browser and the reader's switch say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plantwire_platform.console import catalog
from plantwire_platform.console.pages import PAGES

CONSOLE = Path(catalog.__file__).parent
# t("key") / t('key') in templates and PW.t("key") / t("key") in scripts
LITERAL = re.compile(r"""\bt\(\s*["']([\w.-]+)["']\s*[,)]""")
# keys made in a script from a prefix and a known code: `refusal.${code}`
PREFIXED = re.compile(r"""\bt\(\s*[^"')]*`([\w.-]+)\$\{""")


def used_keys() -> set[str]:
    found = {page.title for page in PAGES}
    found |= {f"language.{lang}" for lang in catalog.LANGUAGES}
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("static/*.js")]:
        found |= set(LITERAL.findall(path.read_text("utf-8")))
    return found


def test_catalogues_have_the_same_keys_and_placeholders() -> None:
    assert catalog.gaps() == []


def test_every_key_used_is_in_the_catalogues() -> None:
    keys = used_keys()
    assert len(keys) > 20, "the pattern finds the keys"
    for lang in catalog.LANGUAGES:
        assert sorted(keys - set(catalog.messages(lang))) == [], lang


def test_every_prefix_of_made_keys_has_entries() -> None:
    for path in CONSOLE.glob("static/*.js"):
        for prefix in PREFIXED.findall(path.read_text("utf-8")):
            assert any(k.startswith(prefix) for k in catalog.messages("en")), (path, prefix)


def test_a_missing_translation_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    real = catalog.messages

    def lacking(language: str) -> dict[str, str]:
        words = dict(real(language))
        if language == "en":
            del words["signin.submit"]
            words["status.failed"] = "Could not load"  # its placeholder lost
        return words

    monkeypatch.setattr(catalog, "messages", lacking)
    assert {(g.language, g.key, g.problem.split()[0]) for g in catalog.gaps()} == {
        ("en", "signin.submit", "missing"),
        ("en", "status.failed", "placeholders"),
        ("zh-CN", "status.failed", "placeholders"),
    }


def test_translate_fills_placeholders() -> None:
    assert catalog.translate("en", "nav.signed_in_as", user="li.wei") == "Signed in as li.wei"
    assert catalog.translate("zh-CN", "nav.signed_in_as", user="li.wei") == "当前用户：li.wei"
    with pytest.raises(KeyError):
        catalog.translate("en", "no.such.key")


@pytest.mark.parametrize(
    ("accept", "cookie", "chosen"),
    [
        (None, None, "zh-CN"),
        ("", None, "zh-CN"),
        ("en-US,en;q=0.9", None, "en"),
        ("zh-TW,zh;q=0.9,en;q=0.8", None, "zh-CN"),
        ("de-DE,en;q=0.5,zh;q=0.4", None, "en"),
        ("fr-FR", None, "zh-CN"),
        ("en;q=0.2,zh-Hans;q=0.7", None, "zh-CN"),
        ("en;q=0, zh;q=0", None, "zh-CN"),
        ("en;q=abc, zh", None, "zh-CN"),
        ("zh-CN", "en", "en"),
        ("en", "zh-CN", "zh-CN"),
        ("en", "xx", "en"),
    ],
)
def test_language_of_a_request(accept: str | None, cookie: str | None, chosen: str) -> None:
    assert catalog.negotiate(accept, cookie) == chosen
