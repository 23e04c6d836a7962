"""The one HTTP call of webhook delivery: POST a signed notice, report what came back.

The standard library's client suffices for one small POST; it blocks, so the
delivery worker calls it from its own threads.  Redirects are not followed (see
``retry.after_attempt``) and are reported as the failure status they are.
"""

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Final

from services.delivery.retry import PostResult

USER_AGENT: Final = "Coreline-Webhooks/1"
_RESPONSE_READ_LIMIT: Final = 64 * 1024

PostNotice = Callable[[str, bytes, Mapping[str, str], float], PostResult]
"""``(url, body, headers, timeout_s) -> PostResult``: how a delivery is sent."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirects())


def post_notice(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> PostResult:
    """POST ``body``; never raises for anything the receiver or the network does."""
    request = urllib.request.Request(  # noqa: S310 - webhooks accept only http(s) URLs
        url, data=body, headers={**headers, "User-Agent": USER_AGENT}, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            # Drain a little so the connection closes cleanly; the answer is the status.
            response.read(_RESPONSE_READ_LIMIT)
            return PostResult(int(response.status))
    except urllib.error.HTTPError as error:
        error.close()  # it holds the response; left open it warns when collected
        return PostResult(error.code, f"HTTP {error.code} {error.reason}")
    except urllib.error.URLError as error:
        return PostResult(None, f"unreachable: {error.reason}")
    except (OSError, http.client.HTTPException) as error:
        return PostResult(None, f"{type(error).__name__}: {error}" if str(error) else repr(error))
