"""What each notification is about: its category, which recipients' preferences are kept by.

Every template belongs to a category; a call may name another one (``category="marketing"``).
Critical categories cannot be turned off, carry no unsubscribe link and ignore quiet hours: a user
always gets the email that verifies their address or warns them of a new sign-in.
"""

from dataclasses import dataclass

from .exceptions import InvalidNotification


@dataclass(frozen=True)
class Category:
    name: str
    label: str
    critical: bool = False


CATEGORIES: dict[str, Category] = {
    category.name: category
    for category in (
        Category("verification", "Address verification", critical=True),
        Category("security", "Security alerts", critical=True),
        Category("account", "Account and invitations"),
        Category("appointments", "Appointments"),
        Category("updates", "Updates and messages"),
        Category("marketing", "News and offers"),
    )
}

#: The category of each template; a template not named here is "updates".
TEMPLATE_CATEGORIES = {
    "verification": "verification",
    "invitation": "account",
    "appointment_confirmation": "appointments",
    "appointment_reminder_day_before": "appointments",
    "appointment_reminder_hour_before": "appointments",
    "abandon_recovery": "marketing",
}
DEFAULT_CATEGORY = "updates"


def category_of(template: str, name: str = "") -> Category:
    """The category a call named, else its template's."""
    name = name or TEMPLATE_CATEGORIES.get(template, DEFAULT_CATEGORY)
    try:
        return CATEGORIES[name]
    except (KeyError, TypeError):
        raise InvalidNotification(
            f"Unknown category {name!r}; use one of: {', '.join(CATEGORIES)}."
        ) from None


def get_category(name: str) -> Category:
    return category_of("", name)
