"""The one exception of the projections: a caller wired something wrong.

Odd or contradictory device data is never an exception here; it becomes a
``Finding`` on the state (see ``findings``).
"""


class ProjectionError(Exception):
    """A fold was used against its contract (say, fed another device's fact)."""
