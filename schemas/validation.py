"""One sentence for a pydantic ``ValidationError``: what dead letters, refused
firmware lines and refused configuration all say about bad input."""

from pydantic import ValidationError


def describe(error: ValidationError, *, skip: int = 0) -> str:
    """The first problem, located: ``data.actuations: Input should be ≥ 1 (and 2 more)``.

    ``skip`` drops leading location parts the caller names itself (a union's tag).
    Input values are never quoted: they may be large, hostile or secret.
    """
    first = error.errors(include_url=False, include_input=False)[0]
    if first["type"] == "union_tag_invalid":
        tag = (first.get("ctx") or {}).get("tag")
        return f"type: unknown event type {tag!r}"
    location = ".".join(str(part) for part in first["loc"][skip:]) or "document"
    more = error.error_count() - 1
    suffix = f" (and {more} more)" if more else ""
    return f"{location}: {first['msg']}{suffix}"
