"""The pages in the user's language: every catalogue holds every text the code marks (with
the same placeholders), every page renders in every language with ``<html lang dir>``, the
language comes from ``ui_locales`` then ``Accept-Language`` then English, and bad, unknown or
huge language values fall back to English — never a 500."""

from __future__ import annotations

import gettext
import html
import re
import shutil
import subprocess
from collections import Counter

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from bridge import i18n
from tests import conftest as root
from tests.bridge.conftest import HTML_PAGES, IDP_ID, SESSION_COOKIE, Actions
from tests.bridge.html_reader import Page

CATALOGUES = i18n.TRANSLATIONS
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@pytest.fixture
def database_url(tmp_path, app_template) -> str:
    """SQLite: the language of a page does not depend on the database."""
    shutil.copytree(app_template, tmp_path, dirs_exist_ok=True)
    return ""


# -- the catalogues -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """What the code marks for translation today (the same command translators run)."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    subprocess.run([root.REPO / "scripts" / "translations.sh", "extract", str(pot)],
                   cwd=root.REPO, check=True, capture_output=True)
    with pot.open("rb") as f:
        return {m.id: m for m in read_po(f) if m.id}


def catalogue(lang: str):
    with (CATALOGUES / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


def single_count_forms(lang: str) -> frozenset[int]:
    """The plural forms the language uses for one count only (Arabic's 0, 1 and 2; the
    "one" form of German and Spanish; none in French, whose first form is 0 and 1)."""
    rule = gettext.c2py(catalogue(lang).plural_expr)
    used = Counter(rule(n) for n in range(1001))
    return frozenset(form for form, times in used.items() if times == 1)


def placeholder_problems(msgid: str | tuple, msgstr: str | tuple,
                         single: frozenset[int] = frozenset()) -> list[str]:
    """What could break or garble a page: an unknown placeholder (KeyError at render), a
    stray ``%`` (ValueError), or one the original has that the translation dropped.
    Only a plural form used for one count (``single``) may leave out ``%(num)s`` ("one
    minute", "two minutes"): any other would show several counts without the number."""
    wanted = set(PLACEHOLDER.findall(msgid[-1] if isinstance(msgid, tuple) else msgid))
    forms = list(msgstr) if isinstance(msgstr, tuple) else [msgstr]
    problems = []
    for index, form in enumerate(forms):
        found = set(PLACEHOLDER.findall(form))
        optional = {"num"} if isinstance(msgid, tuple) and index in single else set()
        if found - wanted:
            problems.append(f"unknown placeholder {sorted(found - wanted)} in {form!r}")
        if wanted - found - optional:
            problems.append(f"missing placeholder {sorted(wanted - found)} in {form!r}")
        if "%" in PLACEHOLDER.sub("", form).replace("%%", ""):
            problems.append(f"stray % in {form!r}")
    return problems


def test_the_placeholder_check_catches_what_would_break_a_page():
    assert placeholder_problems("Wait %(num)s s", "Warten Sie %(num)s s") == []
    assert placeholder_problems("Hi %(name)s", "Hallo %(nom)s")  # renamed: KeyError
    assert placeholder_problems("Hi %(name)s", "Hallo")  # dropped
    assert placeholder_problems("100 percent", "100 %")  # stray %: ValueError
    tries = ("%(num)s try", "%(num)s tries")
    arabic = single_count_forms("ar")
    assert arabic == {0, 1, 2}
    assert placeholder_problems(tries, ("%(num)s", "محاولة واحدة", "محاولتان", "%(num)s",
                                        "%(num)s", "%(num)s"), arabic) == []
    # Arabic's "few" form (3 to 10) without the number: "you have tries" (found by review).
    assert placeholder_problems(tries, ("%(num)s", "محاولة واحدة", "محاولتان", "محاولات",
                                        "%(num)s", "%(num)s"), arabic)
    assert single_count_forms("fr") == set()  # "un essai" is also said for 0
    assert placeholder_problems(tries, ("un essai", "%(num)s essais", "%(num)s essais"),
                                single_count_forms("fr"))


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_catalogue_translates_every_marked_text(extracted, lang):
    messages = {m.id: m for m in catalogue(lang) if m.id}
    missing = [k for k in extracted if k not in messages]
    assert not missing, f"{lang}: not in the catalogue (run scripts/translations.sh update)"
    stale = [k for k in messages if k not in extracted]
    assert not stale, f"{lang}: no longer in the code: {stale}"
    single = single_count_forms(lang)
    for key, message in messages.items():
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(forms), f"{lang}: untranslated {key!r}"
        assert not message.fuzzy, f"{lang}: fuzzy {key!r}"
        assert not placeholder_problems(key, message.string, single), (lang, key)


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_the_compiled_catalogue_is_the_po_file(lang):
    """The .mo the pages read was compiled from today's .po (scripts/bootstrap.sh)."""
    mo_path = CATALOGUES / lang / "LC_MESSAGES" / "messages.mo"
    assert mo_path.exists(), "run scripts/translations.sh compile"
    with mo_path.open("rb") as f:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(f) if m.id}
    assert compiled == {_key(m.id): _key(m.string) for m in catalogue(lang) if m.id}


def _key(value):
    return tuple(value) if isinstance(value, list | tuple) else value


def test_the_keycloak_authenticator_speaks_the_same_languages():
    folder = (root.REPO / "plugin" / "keycloak" / "authenticator" / "src" / "main" /
              "resources" / "theme-resources" / "messages")

    def keys(lang: str) -> dict[str, str]:
        text = (folder / f"messages_{lang}.properties").read_text("ascii")  # \\u escapes
        pairs = (line.split("=", 1) for line in text.splitlines()
                 if line.strip() and not line.startswith("#"))
        return {k.strip(): v.encode().decode("unicode_escape") for k, v in pairs}

    english = keys("en")
    for lang in i18n.LANGUAGES[1:]:
        translated = keys(lang)
        assert translated.keys() == english.keys(), lang
        assert all(translated[k] and translated[k] != english[k] for k in english), lang


def test_french_punctuation_never_starts_a_line():
    """French sets ? ! ; : after a space. A plain space lets the browser wrap the mark onto a
    line of its own ("… d'authentification" / "? Configurez-en"), so it is a no-break one
    (narrow before ? ! ;); apostrophes are typographic (U+2019), as in the rest of the catalogue."""
    for message in catalogue("fr"):
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        for form in forms if message.id else ():
            assert not re.search(r" [?!;:]", form), form
            assert "'" not in form, form


# -- every page in every language ----------------------------------------------------------
@pytest.fixture(params=i18n.LANGUAGES)
def lang(request) -> str:
    return request.param


@pytest.fixture
def client(app, lang):
    """A browser whose preferred language is ``lang``."""
    browser = app.test_client()
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = f"{lang}, en;q=0.1"
    return browser


def english_texts(lang: str) -> list[str]:
    """English texts that must not show on a page in ``lang`` (those translated differently;
    short ones like "Print" could be part of a longer translation, so they are skipped)."""
    return [m.id for m in catalogue(lang)
            if m.id and isinstance(m.id, str) and m.string != m.id and len(m.id) > 14
            and "%(" not in m.id]


def visible_text(page_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page_html))


def test_every_page_renders_in_every_language(pages, lang):
    leaks = english_texts(lang) if lang != "en" else []
    for name in HTML_PAGES:
        response = pages[name]
        assert response.status_code < 500, name
        body = response.get_data(as_text=True)
        root_element = Page(body).one("html")
        assert root_element.attrs.get("lang") == lang, name
        assert root_element.attrs.get("dir") == ("rtl" if lang in i18n.RTL else "ltr"), name
        text = visible_text(body)
        assert "%(" not in text and "Traceback" not in text, name
        for english in leaks:
            assert english not in text, f"{name} in {lang} shows English: {english!r}"
    for name in ("download", "rotation download"):
        text = pages[name].get_data(as_text=True)
        assert "%(" not in text
        for english in leaks:
            assert english not in text, f"{name} in {lang} shows English: {english!r}"


@pytest.mark.parametrize(("lang", "sentence"), [
    ("en", "This code works only once."), ("de", "Dieser Code funktioniert nur einmal."),
    ("ar", "هذا الرمز يعمل مرة واحدة فقط.")])
def test_the_recovery_code_file_is_translated_with_a_local_date(pages, lang, sentence):
    text = pages["download"].get_data(as_text=True)
    assert sentence in text
    month = {"en": r"[A-Z][a-z]+ \d{1,2}, \d{4}", "de": r"\d{1,2}\. [A-ZÄÖÜ][a-zäöü]+ \d{4}",
             "ar": r"\d{1,2} \S+ \d{4}"}[lang]
    assert re.search(month, text), text


# -- choosing the language -----------------------------------------------------------------
@pytest.mark.parametrize(("ui_locales", "accept", "expected"), [
    ("ar", "de", "ar"),  # ui_locales first
    ("nl de-CH", "fr", "de"),  # first supported ui_locales tag, region ignored
    ("nl", "fr-CA,fr;q=0.9", "fr"),  # none supported: Accept-Language
    (None, "es-419, en;q=0.5", "es"),
    (None, "en;q=0.2, ar;q=0.9", "ar"),  # quality values count
    (None, "de;q=0, fr;q=0.3", "fr"),  # q=0 means "not this one"
    (None, None, "en"),
])
def test_the_language_comes_from_ui_locales_then_accept_language(make_app, clock, ui_locales,
                                                                 accept, expected):
    app = make_app()
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    if accept:
        act.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = accept
    login = act.start("lou", ui_locales=ui_locales)
    assert Page(login.last_page).one("html").attrs["lang"] == expected


@pytest.mark.parametrize(("accept", "expected"), [
    ("de;Q=0.1, fr", "fr"),  # the weight's name in either case (RFC 5234 §2.3)
    ("en;q=0, *", "de"),  # "*": any language not named; English was refused
    ("*;q=0.5, de;q=0.1", "en"),  # the wildcard outweighs German
    ("de;q=0, *;q=0.9", "en"),  # German stays refused under the wildcard
    ("*;q=0", "en"),
    (",".join(f"x{i}" for i in range(30)) + ",ar", "ar"),  # every item of a short header
    ("de-AT;q=0.2, de;q=0.8, fr;q=0.5", "de"),  # a language's best range counts
    ("es;level=1;q=0.4, ar;q=0.3", "es"),
])
def test_accept_language_is_weighed_as_rfc_9110_says(accept, expected):
    """Found by review: "Q=" was read as no weight, "*" was passed over, and only the first
    20 items were read."""
    assert i18n.negotiate(None, accept) == expected


BAD_ACCEPT = ["", "*", "xx", "klingon", "de;q=abc", "de;q=2", "de;q=-1", ";;;,,,", "\x00de",
              "ünïcødé", "a" * 100_000, "de," * 5_000, "en-" + "x" * 5_000, "q=0.5",
              "de-DE-x-" + "toolongsubtag" * 3]


@pytest.mark.parametrize("value", BAD_ACCEPT, ids=range(len(BAD_ACCEPT)))
def test_bad_accept_language_falls_back_to_english(app, value):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = value
    response = client.get("/authorize")
    assert response.status_code == 400
    assert Page(response.get_data(as_text=True)).one("html").attrs["lang"] == "en"


@pytest.mark.parametrize("value", ["", "   ", "xx yy", "<script>", "de\x00", "a" * 300,
                                   "de " * 200, "ar-" + "x" * 250, "%(num)s"])
def test_bad_ui_locales_fall_back_to_accept_language_or_english(value):
    assert i18n.negotiate(value, None) == "en"
    assert i18n.negotiate(value, "de") in ("de", "en")  # never an error


def test_a_pushed_request_with_odd_ui_locales_still_works(make_app, clock):
    app = make_app()
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    for value in ("xx yy", "ar-" + "x" * 200, "<b>"):
        response, _ = act.push("lou", ui_locales=value)
        if response.status_code != 201:  # refused at the back channel: a clear 400
            assert response.status_code == 400
            continue
        uri = response.get_json()["request_uri"]
        flow = act.client.get(f"/authorize?client_id={IDP_ID}&request_uri={uri}")
        assert flow.status_code == 200
        assert Page(flow.get_data(as_text=True)).one("html").attrs["lang"] == "en"


def test_every_form_says_the_language_of_its_page(pages, lang):
    for name in HTML_PAGES:
        page = Page(pages[name].get_data(as_text=True))
        for index, _form in enumerate(page.all("form")):
            said = [e for e in page.all("input", name="lang") if e.form == index]
            assert [(e.attrs["type"], e.attrs["value"]) for e in said] == [("hidden", lang)], name


@pytest.mark.parametrize("ui_locales", ["ar", None])
def test_a_post_its_sign_in_no_longer_knows_is_answered_in_the_pages_language(
        make_app, clock, ui_locales):
    """The page was in Arabic (the IdP's ``ui_locales``, or the browser's first choice); the
    browser's list also has German. The sign-in is gone when the code is sent, so only the
    form can say the language the user was reading."""
    app = make_app()
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    act.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de;q=0.5" if ui_locales else "ar, de;q=0.5"
    secret = act.enroll("lou")[0].secret
    login = act.start("lou", ui_locales=ui_locales)
    login.secret = secret
    assert Page(login.last_page).one("html").attrs["lang"] == "ar"
    said = {"lang": re.search(r'name="lang" value="([^"]+)"', login.last_page).group(1),
            "csrf_token": act.csrf(login.last_page)}  # what a browser sends with the code
    clock.advance(app.extensions["stepup"].settings.flow_ttl + 1)
    post = {"otp": act.code_now(login), **said}
    ended = act.client.post(f"{login.flow_url}/totp", data=post)  # the sign-in has expired
    assert ended.status_code >= 400
    root_element = Page(ended.get_data(as_text=True)).one("html")
    assert (root_element.attrs["lang"], root_element.attrs["dir"]) == ("ar", "rtl")
    act.client.delete_cookie(SESSION_COOKIE)  # a browser that lost its cookie: no CSRF match
    expired = act.client.post(f"{login.flow_url}/totp", data=post)
    assert expired.status_code == 400
    assert Page(expired.get_data(as_text=True)).one("html").attrs["lang"] == "ar"
    assert "انتهت صلاحية هذه الصفحة" in expired.get_data(as_text=True)


@pytest.mark.parametrize("action", ["totp", "enroll", "saved", "keep-code", "extend", "cancel"])
def test_a_forms_address_opened_again_shows_the_sign_ins_page_in_its_language(
        make_app, clock, action):
    """Without JavaScript a refused code leaves the form's address in the address bar, and
    Enter sends a GET: it was a 405 in the browser's language, telling a user whose sign-in
    was still open to start again (found by review)."""
    app = make_app()
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    act.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    secret = act.enroll("lou")[0].secret
    login = act.start("lou", ui_locales="ar")
    login.secret = secret
    again = act.client.get(f"{login.flow_url}/{action}")
    assert again.status_code == 303
    assert again.headers["Location"].endswith(login.flow_url)
    page = act.client.get(again.headers["Location"])
    assert page.status_code == 200
    assert Page(page.get_data(as_text=True)).one("html").attrs["lang"] == "ar"
    assert 'autocomplete="one-time-code"' in page.get_data(as_text=True)


@pytest.mark.parametrize("value", ["", "xx", "<b>", "de" + "-x" * 40, "ar\x00", "%(num)s"])
def test_an_odd_posted_language_is_passed_over(app, value):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "fr"
    response = client.post("/flow/abc/totp", data={"otp": "123456", "lang": value})
    assert response.status_code == 400
    assert Page(response.get_data(as_text=True)).one("html").attrs["lang"] == "fr"


# -- the language switcher --------------------------------------------------------------------
def switcher(html_text: str) -> dict[str, str | None]:
    """The switcher's entries: language → its link (None for the page's own, marked current)."""
    page = Page(html_text)
    nav = page.one("nav", class_="languages")
    entries = {}
    for item in (e for e in page.all("li") if e.attrs.get("lang") in i18n.NAMES):
        assert item.text.strip() == i18n.NAMES[item.attrs["lang"]]
        assert item.attrs["dir"] == ("rtl" if item.attrs["lang"] in i18n.RTL else "ltr")
        links = [a for a in page.all("a") if a.text == item.text]
        entries[item.attrs["lang"]] = links[0].attrs["href"] if links else None
    assert nav.attrs["aria-label"] and list(entries) == list(i18n.NAMES)
    assert list(i18n.NAMES) == list(i18n.LANGUAGES)  # a language added without its name
    return entries


def test_the_switcher_outranks_the_idps_language_and_is_kept(make_app, clock):
    """Keycloak sent Arabic; the user reads German. One click shows the same page (the same
    key to scan) in German, and the posts, the pages after them and the next sign-in in this
    browser stay German, though the IdP still asks for Arabic."""
    app = make_app()
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    login = act.start("lou", ui_locales="ar")
    secret = re.search(r'id="totp-secret"[^>]*>(.*?)</', login.last_page, re.S).group(1)
    links = switcher(login.last_page)
    current = Page(login.last_page).one(**{"aria-current": "true"})
    assert links["ar"] is None and current.text == "العربية"
    assert links["de"] == f"{login.flow_url}?lang=de"

    german = act.client.get(links["de"])
    assert Page(german.get_data(as_text=True)).one("html").attrs["lang"] == "de"
    assert secret in german.get_data(as_text=True)  # the same setup, not a new one
    login.last_page = german.get_data(as_text=True)
    wrong = act.post(login, "enroll", otp="000000")
    assert wrong.status_code == 400
    assert Page(login.last_page).one("html").attrs["lang"] == "de"
    assert switcher(login.last_page)["fr"] == f"{login.flow_url}?lang=fr"  # the page, not the post
    assert Page(act.client.get(login.flow_url).get_data(as_text=True)).one(
        "html").attrs["lang"] == "de"
    later = act.start("kim", ui_locales="ar")
    assert Page(later.last_page).one("html").attrs["lang"] == "de"


def test_a_language_link_from_another_site_is_shown_but_not_kept(app):
    """Sec-Fetch-Site: a link elsewhere may show a page in some language; it does not choose
    the language of this browser's later sign-ins."""
    browser = app.test_client()
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = "fr"
    shown = browser.get("/?lang=ar", headers={"Sec-Fetch-Site": "cross-site"})
    assert Page(shown.get_data(as_text=True)).one("html").attrs["lang"] == "ar"
    assert "Set-Cookie" not in shown.headers
    assert Page(browser.get("/").get_data(as_text=True)).one("html").attrs["lang"] == "fr"
    picked = browser.get("/?lang=ar", headers={"Sec-Fetch-Site": "same-origin"})
    assert "Set-Cookie" in picked.headers
    assert Page(browser.get("/").get_data(as_text=True)).one("html").attrs["lang"] == "ar"


def test_the_recovery_form_switches_to_itself(make_app, clock):
    app = make_app()
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    act.enroll("lou")
    login = act.start("lou")
    form = act.client.get(f"{login.flow_url}/recovery").get_data(as_text=True)
    assert switcher(form)["es"] == f"{login.flow_url}/recovery?lang=es"
    spanish = act.client.get(f"{login.flow_url}/recovery?lang=es").get_data(as_text=True)
    assert Page(spanish).one("html").attrs["lang"] == "es"
    assert Page(spanish).all("input", name="recovery_code")


def test_a_page_without_a_sign_in_switches_on_its_own_address(app):
    """Its own address, as the browser has it: a link of the query alone, the path never
    written back (decoded, ``/%5Cevil.example`` would read as another host)."""
    browser = app.test_client()
    assert switcher(browser.get("/").get_data(as_text=True))["fr"] == "?lang=fr"
    expired = browser.get("/authorize?client_id=idp&request_uri=urn%3Ax&lang=de")
    page = expired.get_data(as_text=True)
    assert Page(page).one("html").attrs["lang"] == "de"
    assert switcher(page)["ar"] == "?client_id=idp&request_uri=urn%3Ax&lang=ar"
    hostile = browser.get('/?q="><b>x</b>&lang=de').get_data(as_text=True)
    assert not Page(hostile).all("b")
    assert switcher(hostile)["en"] == "?q=%22%3E%3Cb%3Ex%3C%2Fb%3E&lang=en"
    for path in ("/%5Cevil.example", "/%09/evil.example", "/a%3Fb%23c"):
        missing = browser.get(path)
        assert missing.status_code == 404
        links = switcher(missing.get_data(as_text=True))
        assert all(link in (None, f"?lang={code}") for code, link in links.items())


def test_a_page_answering_a_post_without_a_sign_in_has_no_switcher(app):
    """Its address would only post nothing again."""
    answer = app.test_client().post("/flow/abc/totp", data={"otp": "123456"})
    assert answer.status_code == 400
    assert not Page(answer.get_data(as_text=True)).all("nav", class_="languages")


@pytest.mark.parametrize("value", ["", "xx", "<b>", "de" + "-x" * 40, "ar\x00", "%(num)s"])
def test_an_odd_language_asked_for_is_passed_over_and_not_kept(app, value):
    browser = app.test_client()
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = "fr"
    page = browser.get("/", query_string={"lang": value})
    assert page.status_code == 200
    assert Page(page.get_data(as_text=True)).one("html").attrs["lang"] == "fr"
    assert "Set-Cookie" not in page.headers


def untranslated_words(source: str) -> list[str]:
    """Words a template writes out as they are, outside ``_()``: in text between tags and in
    the attributes people see or hear (aria-label, title, alt, placeholder)."""
    plain = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", source, flags=re.S)
    heard = re.findall(r'(?:aria-label|title|alt|placeholder)="([^"]*)"', plain)
    text = re.sub(r"<[^>]*>", " ", plain)
    return [w for w in re.findall(r"[^\W\d_]{2,}", " ".join([text, *heard])) if w != "Stepup"]


def test_no_template_writes_text_outside_the_catalogue():
    templates = sorted((root.REPO / "bridge" / "templates").glob("*.*"))
    assert len(templates) >= 10
    for path in templates:
        words = untranslated_words(path.read_text())
        assert not words, f"{path.name}: {words} not wrapped in _()"
    assert untranslated_words('<p>Hello {{ _("x") }}</p><b aria-label="Progress">'
                              ) == ["Hello", "Progress"]


@pytest.mark.parametrize(("lang", "title"), [("en", "Two-step verification"),
                                             ("ar", "التحقق بخطوتين")])
def test_the_bridges_own_address_says_what_it_is_and_where_to_start(app, lang, title):
    """Not "Page not found": a user who opens the bare address (the demo prints it) learns
    what the service is, in their language, as news rather than an error."""
    browser = app.test_client()
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    page = browser.get("/")
    assert page.status_code == 200
    html_page = Page(page.get_data(as_text=True))
    assert html_page.one("h1").text.strip() == title
    assert html_page.all(role="status") and not html_page.all(role="alert")


def test_the_bare_prefix_of_a_mounted_bridge_is_the_same_page_not_a_redirect(app):
    """Mounted under a path, its bare prefix reaches the app with an empty path: werkzeug would
    answer 308 to the request's own Host; the page is shown instead."""
    page = app.test_client().get("/", environ_overrides={"PATH_INFO": ""},
                                  headers={"Host": "evil.example"})
    assert page.status_code == 200 and "Location" not in page.headers
