"""Every word of the console and of the API's error details in both languages: the catalogues
hold the same keys with the same placeholders, every key a template, script or module names
exists (and every key of the API's catalogue is named somewhere), every message pydantic can
give has its Chinese, every problem the platform's validators find is a catalogue text, no page
writes words of its own (templates and scripts), and the language of a request is chosen as
the browser and the reader's switch say.

What reaches a reader is found by construction, not from a list kept here: an API error's
detail can only be something worded (``ApiError`` takes a ``Worded``, which ``mypy --strict``
holds every call to), the keys are read from the code, pydantic's error types from
pydantic, the validators from the platform's source, and a page's words from its template's
text and its scripts' string literals."""

from __future__ import annotations

import ast
import re
import typing
from datetime import date, datetime, time, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError, field_validator
from pydantic_core.core_schema import ErrorType

from plantwire_platform import errors, translation
from plantwire_platform.console import catalog
from plantwire_platform.console.pages import PAGES
from plantwire_platform.problems import validation_message
from plantwire_platform.registry.sheet import COLUMNS

HAN = re.compile(r"[\u4e00-\u9fff]")
CONSOLE = Path(catalog.__file__).parent
PLATFORM = CONSOLE.parent
# Text("key", ...) in the platform's modules, and keys made by pattern: Text(f"grant.for_{side}")
TEXT = re.compile(r"""\bText\(\s*"([\w.-]+)"\s*[,)]""")
MADE = re.compile(r"""\bText\(\s*f"([\w.{}-]+)"\s*[,)]""")
TEXT_CHOICE = re.compile(r"""\bText\(\s*"([\w.-]+)"\s+if\s+\w+\s+else\s+"([\w.-]+)"\s*\)""")
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
    assert translation.gaps(catalog.WORDS) == []
    assert translation.gaps(translation.API) == []


def copied(words: dict[str, str]) -> list[str]:
    """The Chinese texts that are English left as it is: words (outside placeholders) but no
    Chinese; an acronym (OEE) is no word, and each language names itself (``language.en``)."""
    return sorted(
        key
        for key, text in words.items()
        if not key.startswith("language.")
        and not HAN.search(text)
        and re.search(r"[a-z]{2,}", translation.PLACEHOLDER.sub("", text))
    )


def test_no_chinese_text_is_english_left_as_it_is() -> None:
    assert copied(catalog.messages("zh-CN")) == []
    assert copied(translation.API.messages("zh-CN")) == []
    assert copied(
        {"a.b": "{n} items", "c.d": "{n} 项", "e.f": "OEE", "language.en": "English"}
    ) == ["a.b"]


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
    real = translation._load

    def lacking(package: str, folder: str, language: str) -> dict[str, str]:
        words = dict(real(package, folder, language))
        if language == "en":
            words.pop("signin.submit", None)
            words.pop("grant.missing", None)
            if "status.failed" in words:
                words["status.failed"] = "Could not load"  # its placeholder lost
            if "window.too_long" in words:
                words["window.too_long"] = "the window is too long"
        return words

    monkeypatch.setattr(translation, "_load", lacking)
    assert {(g.language, g.key, g.problem.split()[0]) for g in translation.gaps(catalog.WORDS)} == {
        ("en", "signin.submit", "missing"),
        ("en", "status.failed", "placeholders"),
        ("zh-CN", "status.failed", "placeholders"),
    }
    assert {
        (g.language, g.key, g.problem.split()[0]) for g in translation.gaps(translation.API)
    } == {
        ("en", "grant.missing", "missing"),
        ("en", "window.too_long", "placeholders"),
        ("zh-CN", "window.too_long", "placeholders"),
    }


def api_keys_named(root: Path = PLATFORM) -> tuple[set[str], set[str]]:
    """The API catalogue's keys the platform's modules name, and the patterns of those they
    make (``grant.for_{side}`` read as ``grant.for_\\w+``)."""
    named: set[str] = set()
    patterns: set[str] = set()
    for path in root.rglob("*.py"):
        text = path.read_text("utf-8")
        named |= set(TEXT.findall(text))
        for pair in TEXT_CHOICE.findall(text):
            named |= set(pair)
        patterns |= {
            r"\w+".join(map(re.escape, re.split(r"\{[^}]*\}", made))) for made in MADE.findall(text)
        }
    named |= {f"validation.{kind}" for kind in VALIDATION_TYPES}
    named |= {*errors.BAD_VALUES.values(), *errors.BROKEN.values()}  # by PostgreSQL's error
    return named, patterns


OWN_WORDS = ("value_error", "assertion_error")
"""pydantic's error types whose message is the validator's own: the platform's are catalogue
texts (:class:`~plantwire_platform.translation.Said`), which the validator test holds."""
VALIDATION_TYPES = tuple(t for t in typing.get_args(ErrorType) if t not in OWN_WORDS)
"""Every error type pydantic can give, from pydantic itself: a request or document failing
validation in any way is answered in Chinese."""


def test_every_api_message_named_in_code_is_in_both_catalogues() -> None:
    named, patterns = api_keys_named()
    assert len(named) > 80 and len(patterns) > 5, "the patterns find the keys"
    for lang in translation.LANGUAGES:
        words = translation.API.messages(lang)
        assert sorted(named - set(words)) == [], lang
        for pattern in patterns:
            assert any(re.fullmatch(pattern, key) for key in words), (lang, pattern)


def test_every_api_message_is_named_in_code() -> None:
    named, patterns = api_keys_named()
    unused = [
        key
        for key in translation.API.messages("en")
        if key not in named
        and not key.startswith("validation.")
        and not any(re.fullmatch(p, key) for p in patterns)
    ]
    assert unused == []


def test_a_message_named_in_code_without_translation_fails(tmp_path: Path) -> None:
    (tmp_path / "route.py").write_text(
        'raise ApiError(404, "not_found", Text("grant.missing"))\n'
        'raise ApiError(404, "not_found", Text("no.such.message", id=1))\n'
        'raise ApiError(403, "role_forbidden", Text(f"no.such.{kind}", role=role))\n'
    )
    named, patterns = api_keys_named(tmp_path)
    words = translation.API.messages("zh-CN")
    assert sorted(named - set(words)) == ["no.such.message"]
    unmatched = [p for p in patterns if not any(re.fullmatch(p, k) for k in words)]
    assert unmatched == [r"no\.such\.\w+"]


def test_pydantic_gives_many_error_types() -> None:
    assert len(VALIDATION_TYPES) > 100, "the error types are read from pydantic"


@pytest.mark.parametrize("kind", VALIDATION_TYPES)
def test_validation_messages_are_worded_in_both_languages(kind: str) -> None:
    english = translation.API.messages("en")[f"validation.{kind}"]
    ctx = {name: 7 for name in translation.PLACEHOLDER.findall(english)}
    error = {"type": kind, "msg": "pydantic's words", "ctx": ctx}
    zh, en = (validation_message(lang, error) for lang in ("zh-CN", "en"))
    assert en == "pydantic's words"  # English is pydantic's own wording
    assert zh != en and "{" not in zh and HAN.search(zh)


MALFORMED = (
    *("", "2", "2026-", "x026-01-01", "2026x01-01", "2026-0x-01", "2026-13-01", "2026-01-0x"),
    *("2026-01-32", "2026-01-01T", "2026-01-01T1x:00", "2026-01-01T25:00", "2026-01-01T10x00"),
    *("2026-01-01T10:0x", "2026-01-01T10:61", "2026-01-01T10:00:0x", "2026-01-01T10:00:61"),
    *("2026-01-01T10:00:00.x", "2026-01-01T10:00:00+25:00", "2026-01-01T10:00:00+0x:00"),
    *("2026-01-01T10:00:00+01x00", "2026-01-01 10:00:00 ", "abc"),
)
"""Dates, times and durations malformed every way we know: pydantic says why each does not
parse (the ``error`` of its context)."""


def parse_reasons() -> set[str]:
    """Why pydantic's parser refuses each of :data:`MALFORMED` as a date, time, datetime or
    duration: its own words, collected from it."""
    found: set[str] = set()
    for kind in (datetime, date, time, timedelta, AwareDatetime):
        for text in MALFORMED:
            try:
                TypeAdapter(kind).validate_python(text)
            except ValidationError as exc:
                found |= {e["ctx"]["error"] for e in exc.errors() if "error" in e.get("ctx", {})}
    return found


MALFORMED_JSON = (
    *("", "[", "[1 2", "[1,]", "{", "{a: 1}", '{"a" 1}', '{"a": 1 "b": 2}', '{"a": .5}'),
    *('"abc', '{"a": "\\x"}', '{"a": "\x01"}', '{"a": 01}', "1x", "tx", '"\\ud800"'),
    '"\\uDC00"',
)
"""JSON malformed every way we know: pydantic says why each does not parse, and where."""


JSON_VALUE: TypeAdapter[Any] = TypeAdapter(Any)
Format = Literal["toml", "json", "csv"]
# through Any: mypy 1.20 reads a Literal alias as an argument differently with and without
# its cache (an arg-type error, or none), so no ignore comment holds in both
FORMAT: TypeAdapter[Format] = TypeAdapter(cast(Any, Format))


def json_reasons() -> set[str]:
    """Why pydantic's JSON parser refuses each of :data:`MALFORMED_JSON` (where taken off)."""
    found: set[str] = set()
    for text in MALFORMED_JSON:
        try:
            JSON_VALUE.validate_json(text)
        except ValidationError as exc:
            found |= {
                re.sub(r" at line \d+ column \d+$", "", e["ctx"]["error"])
                for e in exc.errors()
                if e["type"] == "json_invalid"
            }
    return found


def test_why_a_time_or_json_does_not_parse_is_worded_too() -> None:
    reasons = parse_reasons() | json_reasons()
    assert len(reasons) > 35, "pydantic's reasons are collected"
    for language in translation.LANGUAGES:
        words = translation.API.messages(language)
        assert sorted(r for r in reasons if f"validation.reason.{r}" not in words) == [], language
    error = {
        "type": "datetime_from_date_parsing",
        "msg": "Input should be a valid datetime or date, month value is outside expected range"
        " of 1-12",
        "ctx": {"error": "month value is outside expected range of 1-12"},
    }
    assert validation_message("zh-CN", error) == "应为有效的日期时间或日期：月的值超出预期范围 1-12"
    assert validation_message("en", error) == error["msg"]
    with pytest.raises(ValidationError) as caught:
        FORMAT.validate_python("xml")
    choice = caught.value.errors()[0]  # pydantic's English joins the choices with "or"
    assert validation_message("zh-CN", choice) == "应为 'toml', 'json' 或 'csv'"
    error = {"type": "json_invalid", "ctx": {"error": "expected `:` at line 1 column 6"}}
    assert validation_message("zh-CN", error) == "JSON 无效：应为 `:`（第 1 行，第 6 列）"


def validators(root: Path = PLATFORM) -> dict[str, list[ast.Raise]]:
    """Every pydantic validator of the platform's modules (by ``module:function:line``: a module
    may hold several of one name) with the ``raise`` statements in it."""
    found: dict[str, list[ast.Raise]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                "validator" in ast.unparse(d) for d in node.decorator_list
            ):
                raises = [n for n in ast.walk(node) if isinstance(n, ast.Raise)]
                found[f"{path.relative_to(root)}:{node.name}:{node.lineno}"] = raises
    return found


def unworded(found: dict[str, list[ast.Raise]]) -> list[str]:
    """The raises of validators that do not raise a catalogue text: ``Said(Text(...))``."""
    return [
        f"{where}:{r.lineno}"
        for where, raises in found.items()
        for r in raises
        if r.exc is not None and not re.fullmatch(r"Said\(Text\(.*\)\)", ast.unparse(r.exc))
    ]


def test_every_validator_of_the_platform_raises_catalogue_texts() -> None:
    found = validators()
    assert len(found) >= 5, "the validators are found"
    # settings are read from the operator's environment at start, never from a request
    assert [w for w in unworded(found) if not w.startswith("settings.py:")] == []


def test_a_validator_raising_english_is_found(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(
        "class Site(BaseModel):\n"
        "    @field_validator('code')\n"
        "    def _code(cls, value):\n"
        "        if not value:\n"
        "            raise Said(Text('registry.code'))\n"
        "        if value == 'x':\n"
        "            raise ValueError(f'site {value}: a bad code')\n"
        "        return value\n"
        "class Line(BaseModel):\n"
        "    @model_validator(mode='after')\n"
        "    def _code(self):\n"
        "        raise ValueError('a line of the same name')\n"
    )
    assert unworded(validators(tmp_path)) == ["model.py:_code:3:7", "model.py:_code:11:12"]


def test_a_problem_a_validator_found_is_worded_in_the_requests_language() -> None:
    class Site(BaseModel):
        timezone: str

        @field_validator("timezone")
        @classmethod
        def _known(cls, value: str) -> str:
            raise translation.Said(translation.Text("registry.timezone", site="S1", zone=value))

    with pytest.raises(ValidationError) as caught:
        Site(timezone="Mars/Olympus")
    (error,) = caught.value.errors()
    assert validation_message("zh-CN", error) == "站点 S1：未知时区 'Mars/Olympus'"
    assert validation_message("en", error) == (
        "Value error, site S1: unknown time zone 'Mars/Olympus'"
    )


def test_an_unknown_validation_type_keeps_pydantic_words() -> None:
    error = {"type": "no_such_type", "msg": "pydantic's words"}
    assert validation_message("zh-CN", error) == "pydantic's words"


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


def test_the_api_speaks_english_unless_asked_otherwise() -> None:
    assert translation.negotiate(None, None, translation.API_DEFAULT) == "en"
    assert translation.negotiate("fr-FR", None, translation.API_DEFAULT) == "en"
    assert translation.negotiate("zh-TW,en;q=0.5", None, translation.API_DEFAULT) == "zh-CN"
    assert translation.negotiate("en", "zh-CN", translation.API_DEFAULT) == "zh-CN"


# -- words written into a page outside the catalogue ------------------------------------------

BRAND = "plantwire"
TAGS = frozenset(
    {
        "a",
        "button",
        "caption",
        "canvas",
        "code",
        "div",
        "form",
        "h1",
        "h2",
        "h3",
        "input",
        "label",
        "li",
        "option",
        "p",
        "pre",
        "section",
        "select",
        "small",
        "span",
        "strong",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
VISIBLE = ("title", "aria-label", "placeholder", "alt")
LETTERS = re.compile(r"[A-Za-z]")
# a string literal of a script ("...", '...' or `...` without a ${...}) with two words in it
PHRASE = re.compile(
    r"""(["'`])((?:(?!\1)[^\\\n$])*[A-Za-z]{2,} [A-Za-z]{2,}(?:(?!\1)[^\\\n$])*)\1"""
)
COMMENT = re.compile(r"^\s*//.*$|\s//.*$|/\*.*?\*/", re.M | re.S)
SELECTOR = re.compile(r"^[#.\[]|[\[\]=():>]")  # a selector's part: #id, .class, [attr]


class _Words(HTMLParser):
    """The text a template shows (its Jinja expressions taken out) and its visible attributes
    (title, aria-label, placeholder, alt) that hold letters."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.inside = 0  # in a script or style element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.inside += tag in ("script", "style")
        self.found += [v for k, v in attrs if k in VISIBLE and v and LETTERS.search(v)]

    def handle_endtag(self, tag: str) -> None:
        self.inside -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.inside and LETTERS.search(data):
            self.found.append(data.strip())


def template_words(text: str) -> list[str]:
    """The words a template writes itself rather than from the catalogue."""
    parser = _Words()
    parser.feed(re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", text, flags=re.S))
    not_words = {BRAND, f"· {BRAND}", ",".join(COLUMNS)}  # the name; the sheet's columns
    return [w for w in parser.found if w not in not_words]


def script_words(text: str, classes: set[str]) -> list[str]:
    """The phrases a script writes itself: string literals (outside comments) of two words or
    more that are not CSS classes of the console's style sheet, element names, selectors or the
    strict-mode directive."""
    allowed = classes | TAGS | {"use", "strict"}
    return [
        phrase
        for _, phrase in PHRASE.findall(COMMENT.sub("", text))
        if not all(w in allowed or SELECTOR.search(w) for w in phrase.split())
    ]


def css_classes() -> set[str]:
    return set(re.findall(r"\.([A-Za-z][\w-]*)", (CONSOLE / "static/console.css").read_text()))


def test_pages_write_no_words_of_their_own() -> None:
    """Every word a page shows comes from the catalogue (in both languages, as the tests above
    hold): the templates' text and visible attributes, and the scripts' phrases."""
    templates = sorted(CONSOLE.glob("templates/*.html"))
    scripts = sorted(CONSOLE.glob("static/*.js"))
    assert len(templates) > 5 and len(scripts) > 5
    assert {p.name: template_words(p.read_text("utf-8")) for p in templates} == {
        p.name: [] for p in templates
    }
    classes = css_classes()
    assert {p.name: script_words(p.read_text("utf-8"), classes) for p in scripts} == {
        p.name: [] for p in scripts
    }


def test_a_word_written_into_a_page_is_found() -> None:
    page = (
        '{% extends "base.html" %}<h2>{{ t("registry.title") }}</h2>'
        '<button title="Save the entry">{{ t("save") }}</button><p>Nothing yet</p>'
        "<script>const x = 'not a word';</script>"
    )
    assert template_words(page) == ["Save the entry", "Nothing yet"]
    script = (
        'PW.status(PW.t("status.loading")); el.className = "label ratio";\n'
        'el.textContent = "Could not load"; q("thead tr"); `${n} items`;\n'
    )
    assert script_words(script, {"label", "ratio"}) == ["Could not load"]
