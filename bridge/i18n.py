"""The pages in the user's language (Flask-Babel).

The language is the one the user picked on our pages (the switcher at the foot of every page:
``?lang=`` on a page's address, then remembered in this browser's session), else the first
supported one in the pushed request's ``ui_locales`` (the IdP knows the user's choice: Keycloak
sends it), else the best match of ``Accept-Language``, else English. A form posted from one of
our pages says the language it was shown in (``lang``): a post whose sign-in is gone is
answered in it.
Anything unknown, malformed or oversized falls back to English — never an error.

Catalogues live in ``bridge/translations/<lang>/LC_MESSAGES/messages.po`` and are compiled to
``.mo`` by ``scripts/bootstrap.sh`` (``pybabel compile``); ``babel.cfg`` says what is extracted.
The domain (:mod:`bridge.challenge`) has no Flask: it marks its texts with ``N_`` and puts
numbers in ``ChallengeError.params``; :func:`error_text` translates them here.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, g, render_template, request, session
from flask_babel import Babel, format_decimal, get_locale, get_translations, gettext
from markupsafe import Markup

from .challenge.errors import ChallengeError, ClockDrift, WrongCode

#: Supported languages, English first (the fallback).
LANGUAGES = ("en", "de", "fr", "es", "ar")
#: Written right to left.
RTL = frozenset({"ar"})
#: Each language by its own name: the switcher's words, whatever the page's language.
NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español", "ar": "العربية"}
TRANSLATIONS = Path(__file__).parent / "translations"
#: Longer language lists are ignored rather than parsed (a hostile header costs nothing).
MAX_HEADER = 512
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")  # BCP 47, loosely


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale,
          default_translation_directories=str(TRANSLATIONS))
    # Flask-Babel's template callables look the catalogue up anew on every call, through the
    # request context several times; a page calls them a dozen times. The request's locale is
    # fixed once chosen (Flask-Babel keeps it), so its catalogue is found once per request.
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _catalogue().ugettext(s),
        ngettext=lambda s, p, n: _catalogue().ungettext(s, p, n), newstyle=True)
    app.jinja_env.filters["number"] = number
    app.jinja_env.globals["language_switcher"] = language_switcher

    @app.context_processor
    def _language() -> dict[str, str]:
        lang = get_locale().language if get_locale() else "en"
        return {"html_lang": lang, "html_dir": "rtl" if lang in RTL else "ltr"}


def _catalogue():
    if (found := g.get("stepup_catalogue")) is None:
        found = g.stepup_catalogue = get_translations()
    return found


def use_ui_locales(ui_locales: str | None) -> None:
    """The flow's ``ui_locales`` decide this request's language (call before any text)."""
    g.stepup_ui_locales = ui_locales


def select_locale() -> str:
    if chosen := _chosen():
        return chosen
    return negotiate(g.get("stepup_ui_locales"), request.headers.get("Accept-Language"),
                     shown=_posted_from())


def _chosen() -> str | None:
    """The language picked with the switcher: ``?lang=`` on this page's address, kept in the
    session for the pages after it (a post, its redirect, the next sign-in in this browser);
    else the one picked before. It outranks the IdP's ``ui_locales``: the user asked here."""
    asked = request.args.get("lang") if request.method == "GET" else None
    if asked and len(asked) <= 35 and (lang := _language_of(asked)) is not None:
        # Kept only when picked on our own page: a link from another site shows that page in
        # its language, but does not choose the language of this browser's later sign-ins.
        # (Browsers that send no Sec-Fetch-Site are taken at their word.)
        own = request.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin"
        if own and session.get("lang") != lang:
            session["lang"] = lang
        return lang
    kept = session.get("lang")
    return kept if kept in LANGUAGES else None


#: Stands for the page's address in a switcher rendered once per language (a page's render
#: pays a string replace, not a loop over the languages).
_HERE = "stepup-switch-here"
_switchers: dict[str, Markup] = {}


def language_switcher(here: str | None) -> Markup:
    """The switcher (``_languages.html``): each language by its own name, linking to this page
    in it, the page's own marked current. ``here`` is the page's address to switch on (a
    sign-in's page); without one, a page got by GET links to its own address with the query
    changed, and a page that answers a post has none (its address would post nothing)."""
    if here is None:
        if request.method != "GET":
            return Markup("")
        # A link of its query alone keeps the page's own address as the browser has it: the
        # path is never written back (``/%5Cevil.example`` decoded would read as another host).
        query = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "lang"])
        prefix = f"?{query}&" if query else "?"
    else:
        prefix = f"{here}?"
    current = get_locale().language if get_locale() else "en"
    if (shown := _switchers.get(current)) is None:
        shown = _switchers[current] = Markup(render_template(  # noqa: S704 our own template's
            "_languages.html", here=_HERE, current=current, names=NAMES, rtl=RTL))
    return shown.replace(_HERE, prefix)  # Markup.replace escapes the address


def _posted_from() -> str | None:
    """The ``lang`` of a posted form, if the form has been read already (CSRF reads every
    post's): reading a body here, for an error page, could fail again."""
    form = request.__dict__.get("form")
    return form.get("lang") if form else None


def negotiate(ui_locales: str | None, accept_language: str | None,
              shown: str | None = None) -> str:
    """OpenID Connect Core §3.1.2.1 ``ui_locales`` (space-separated, preferred first), then
    the language of the page a form was posted from, then RFC 9110 §12.5.4 ``Accept-Language``
    (quality values), then English."""
    if ui_locales and len(ui_locales) <= MAX_HEADER:
        for tag in ui_locales.split()[:20]:
            if (lang := _language_of(tag)) is not None:
                return lang
    if shown and len(shown) <= 35 and (lang := _language_of(shown)) is not None:
        return lang
    if accept_language and len(accept_language) <= MAX_HEADER:
        return _best_accepted(accept_language) or LANGUAGES[0]
    return LANGUAGES[0]


def _language_of(tag: str) -> str | None:
    if not _TAG.match(tag):
        return None
    lang = re.split(r"[-_]", tag, maxsplit=1)[0].lower()
    return lang if lang in LANGUAGES else None


def _best_accepted(header: str) -> str | None:
    """The supported language the header weighs highest (ties: the one listed first). A
    range counts for the language of its primary subtag; ``*`` weighs every language no
    range names, so a language refused with ``q=0`` stays refused. The header's length is
    bounded (:data:`MAX_HEADER`), so every item is read."""
    named: dict[str, tuple[float, int]] = {}  # language: (best quality, where it was named)
    wildcard: tuple[float, int] | None = None
    for index, item in enumerate(header.split(",")):
        tag, *params = item.strip().split(";")
        quality = _quality(params)
        if quality is None:
            continue
        if tag.strip() == "*":
            wildcard = wildcard or (quality, index)
        elif (lang := _language_of(tag.strip())) is not None and quality > named.get(
                lang, (-1.0, 0))[0]:
            named[lang] = (quality, index)
    ranked = [(-q, index, LANGUAGES.index(lang), lang)
              for lang, (q, index) in named.items() if q > 0]
    if wildcard is not None and wildcard[0] > 0:
        ranked += [(-wildcard[0], wildcard[1], LANGUAGES.index(lang), lang)
                   for lang in LANGUAGES if lang not in named]
    return min(ranked)[3] if ranked else None


def _quality(params: list[str]) -> float | None:
    """RFC 9110 §12.4.2's weight, ``q`` in either case; 1 without one; None if malformed."""
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                return None
            return quality if 0 <= quality <= 1 else None
    return 1.0


def number(value: float) -> str:
    return format_decimal(value)


def error_text(error: ChallengeError) -> str:
    """A challenge error in the page's language, numbers in its format."""
    if isinstance(error, ClockDrift):
        minutes = error.minutes
        if error.fast:
            text = plural_text("Your device's clock looks about %(num)s minute fast.",
                          "Your device's clock looks about %(num)s minutes fast.", minutes)
        else:
            text = plural_text("Your device's clock looks about %(num)s minute slow.",
                          "Your device's clock looks about %(num)s minutes slow.", minutes)
        parts = [gettext("That code didn't work."), text, gettext(
            "Set the date and time to automatic: on Android in Settings > System > "
            "Date & time, on an iPhone in Settings > General > Date & Time. Then enter the "
            "code your app shows.")]
    else:
        params = {k: number(v) if isinstance(v, int | float) else v
                  for k, v in error.params.items()}
        if error.plural is not None and error.count is not None:
            parts = [plural_text(error.msgid, error.plural, error.count, **params)]
        else:
            parts = [gettext(error.msgid, **params)]
    if isinstance(error, WrongCode) and error.wait:
        parts.append(plural_text("Wait %(num)s second before the next try.",
                                 "Wait %(num)s seconds before the next try.", error.wait))
    if isinstance(error, WrongCode) and error.tries_left:
        if error.ends_setup:
            parts.append(plural_text(
                "You have %(num)s more try before this setup ends and you start again.",
                "You have %(num)s more tries before this setup ends and you start again.",
                error.tries_left))
        else:
            parts.append(plural_text(
                "You have %(num)s more try before two-step verification is locked.",
                "You have %(num)s more tries before two-step verification is locked.",
                error.tries_left))
    return " ".join(parts)


def plural_text(singular: str, plural: str, count: int, **params: object) -> str:
    """``ngettext`` with ``%(num)s`` in the locale's number format (Flask-Babel's own
    ``ngettext`` puts the raw number in)."""
    return get_translations().ungettext(singular, plural, count) % {"num": number(count),
                                                                     **params}
