"""``python -m services`` runs the ``coreline`` command line."""

from services.cli import app

app(prog_name="coreline")
