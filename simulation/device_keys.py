"""Each simulated handpiece's seal key (DESIGN §4.1), derived from the fleet seed and
its serial: the same seed gives the same keys, so a test or the demo registers them
without asking the simulated device (a real key never leaves its handpiece)."""

from seal_keys import SealKey


def simulated_key(seed: int, device_id: str) -> SealKey:
    return SealKey.derived(f"{seed}\n{device_id}")
