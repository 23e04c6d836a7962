"""The web dashboard: server-rendered pages over the API's queries, every asset
served from this package (no CDN)."""
