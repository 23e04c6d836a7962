"""Connection URLs in messages and logs: passwords never appear."""


def redact(url: str) -> str:
    """The URL with any password replaced, safe to log or print."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
