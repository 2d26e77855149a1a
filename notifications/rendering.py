"""Template lookup and rendering for every channel, in the recipient's language."""

from typing import cast

from django.conf import settings
from django.template import Context, Engine, TemplateDoesNotExist, engines
from django.template.backends.django import DjangoTemplates
from django.template.loader import select_template
from django.utils import translation

from .exceptions import InvalidNotification, UnknownTemplate


def text_engine() -> Engine:
    """The project's template engine; text parts are rendered with a Context that does not escape."""
    return cast(DjangoTemplates, engines["django"]).engine


def resolve_language(language=None):
    """The language to render in: the one asked for, else the active one (the user's), else the default."""
    if language is None:
        language = translation.get_language() or settings.LANGUAGE_CODE
        strict = False
    else:
        strict = True
    try:
        return translation.get_supported_language_variant(language)
    except LookupError:
        if strict:
            supported = ", ".join(code for code, _ in settings.LANGUAGES)
            raise InvalidNotification(
                f"Unsupported language {language!r}; use one of: {supported}."
            ) from None
        return settings.LANGUAGE_CODE


#: The language every shipped template exists in.
FALLBACK_LANGUAGE = "en"


def candidate_names(pattern, language):
    """Template names to try for a language, falling back to the default language, then to English.

    English comes last for hosts whose LANGUAGE_CODE has no templates, such as Django's "en-us".
    """
    languages = dict.fromkeys([language, settings.LANGUAGE_CODE, FALLBACK_LANGUAGE])
    return [pattern.format(language=code) for code in languages]


def find_template(pattern, language, *, html=False):
    names = candidate_names(pattern, language)
    try:
        if html:
            return select_template(names)
        return text_engine().select_template(names)
    except TemplateDoesNotExist:
        raise UnknownTemplate(f"No template found; looked for {', '.join(names)}.") from None


def render_text(pattern, context, language):
    """Subjects, text bodies and SMS: plain text, so never HTML-escaped."""
    template = find_template(pattern, language)
    with translation.override(language):
        return template.render(Context(context, autoescape=False))


def render_html(pattern, context, language):
    template = find_template(pattern, language, html=True)
    with translation.override(language):
        return template.render(context)
