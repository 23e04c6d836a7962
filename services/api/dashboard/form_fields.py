"""Reading the text fields of the management forms: each reader trims, checks and
returns the value, or raises ``FormInputError`` with a sentence the page shows next
to the form (a 400 that says what to type, never a 500)."""

import re

from schemas.fields import CLINIC_ID_PATTERN, DEVICE_ID_PATTERN, MAX_SEQ


class FormInputError(ValueError):
    """A field the form cannot take as typed; the message is for the person."""


def device_id(text: str, what: str = "Device id") -> str:
    return matching(text, DEVICE_ID_PATTERN, what, "capital letters, digits and dashes, "
                    "3 to 64, e.g. HP-000123")  # fmt: skip


def clinic_id(text: str) -> str | None:
    """A clinic, or ``None`` for an empty field (no clinic)."""
    if not text.strip():
        return None
    return matching(text, CLINIC_ID_PATTERN, "Clinic", "letters, digits, dashes and "
                    "underscores, 2 to 64, e.g. clinic-7")  # fmt: skip


def model(text: str) -> str:
    named = text.strip()
    if not 1 <= len(named) <= 64:
        raise FormInputError("Model: 1 to 64 characters.")
    return named


def matching(text: str, pattern: str, what: str, form: str) -> str:
    """``text`` trimmed, if it matches ``pattern``; ``form`` says what does."""
    value = text.strip()
    if re.fullmatch(pattern, value) is None:
        raise FormInputError(f"{what} {value!r}: {form}.")
    return value


def whole_number(text: str, what: str, low: int = 0, high: int = MAX_SEQ) -> int:
    typed = text.strip()
    try:
        number = int(typed.replace(",", ""))
    except ValueError:
        raise FormInputError(f"{what}: a whole number, not {typed!r}.") from None
    if not low <= number <= high:
        raise FormInputError(f"{what}: from {low:,} to {high:,}.")
    return number
