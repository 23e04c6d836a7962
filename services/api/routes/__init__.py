"""The ``/api/v1`` resources, one module each."""
