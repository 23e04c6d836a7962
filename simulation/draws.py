"""The one draw every part of a simulated handpiece's story shares."""

import random


def draw_int(rng: random.Random, low: int, high: int) -> int:
    """A uniform integer in [low, high]: ``randint`` without its argument checks,
    which cost more than the draw on the punch path."""
    return low + int(rng.random() * (high - low + 1))
