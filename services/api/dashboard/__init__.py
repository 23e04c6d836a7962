"""The web dashboard: server-rendered pages over the API's queries, every asset
served from this package (no CDN)."""

# Pages in modules of their own join the dashboard's router as the package loads.
from services.api.dashboard import (
    alert_pages,  # noqa: F401
    audit_log_page,  # noqa: F401
    management_config,  # noqa: F401
    management_devices,  # noqa: F401
    management_identity,  # noqa: F401
)
