"""Template lookup and rendering for every channel, in the recipient's language."""

from functools import cache

from django.conf import settings
from django.template import Context, Engine, TemplateDoesNotExist
from django.template.loader import select_template
from django.utils import translation

from .exceptions import InvalidNotification, UnknownTemplate


@cache
def text_engine():
    """Plain-text parts (subjects, text bodies, SMS) are never HTML-escaped."""
    return Engine(dirs=settings.TEMPLATES[0]["DIRS"], app_dirs=True, autoescape=False)


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


def candidate_names(pattern, language):
    """Template names to try for a language, falling back to the default language."""
    languages = dict.fromkeys([language, settings.LANGUAGE_CODE])
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
    template = find_template(pattern, language)
    with translation.override(language):
        return template.render(Context(context, autoescape=False))


def render_html(pattern, context, language):
    template = find_template(pattern, language, html=True)
    with translation.override(language):
        return template.render(context)
