"""The identifiers a simulated fleet carries: device serials, and the boot, cartridge,
session and operator references a handpiece's story draws.

Each ``draw_*`` consumes exactly one ``getrandbits`` draw, so a seeded story replays
unchanged whichever module formats the identifier.
"""

import random
import uuid


def fleet_device_ids(count: int, first: int = 1) -> list[str]:
    """Serials of a simulated fleet: ``HP-000001``, ``HP-000002``, …"""
    if count < 0 or first < 0:
        raise ValueError("count and first must not be negative")
    return [f"HP-{number:06d}" for number in range(first, first + count)]


def draw_boot_id(rng: random.Random) -> str:
    return f"b-{rng.getrandbits(48):012x}"


def draw_cartridge_id(rng: random.Random) -> str:
    return f"CT-{rng.getrandbits(40):010X}"


def draw_session_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def draw_operator_ref(rng: random.Random) -> str:
    return f"op-{rng.getrandbits(24):06x}"
