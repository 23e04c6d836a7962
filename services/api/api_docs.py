"""The interactive API documentation, served from this server alone.

Swagger UI's files come vendored in the ``fastapi-offline`` package; the page that
starts it loads them and a small script file of ours, so it renders without any
other host (and offline) and under a policy that allows no inline script.
"""

from pathlib import Path
from typing import Final

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from markupsafe import escape

DOCS_PATH: Final = "/api/v1/docs"
DOCS_ASSETS: Final = f"{DOCS_PATH}/assets"
_SWAGGER_DIST: Final = Path(fastapi_offline.__file__).parent / "static"
_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="icon" href="{assets}/favicon.png">
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="/static/swagger-init.js"></script>
</body>
</html>
"""


def install_api_docs(app: FastAPI, openapi_url: str) -> None:
    """The docs page at ``DOCS_PATH``; the application must be built with
    ``docs_url=None`` so FastAPI's own page (which loads Swagger UI from a CDN and
    starts it with an inline script) is not served."""
    page = _PAGE.format(
        title=escape(f"{app.title} — documentation"),
        assets=DOCS_ASSETS,
        openapi_url=escape(openapi_url),
    )

    async def api_docs() -> HTMLResponse:
        return HTMLResponse(page)

    app.mount(DOCS_ASSETS, StaticFiles(directory=_SWAGGER_DIST), name="api-docs-assets")
    app.add_api_route(DOCS_PATH, api_docs, methods=["GET"], include_in_schema=False)
