"""A needle cartridge in a simulated handpiece: drawn when installed, worn by every
actuation, retired when worn (or, at some clinics, well after)."""

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from simulation.catalog import CartridgeModel, pick_cartridge_model
from simulation.draws import draw_int
from simulation.ids import draw_cartridge_id
from simulation.profile import SimulatorProfile


@dataclass(slots=True)
class Cartridge:
    cartridge_id: str
    model: CartridgeModel
    lot: str
    wear_at_rating_pct: float
    """Wear at exactly the rated actuations: lots differ, some reach 100 % early."""
    force_when_new_n: float
    retire_at_life_used: float
    """Above 1 for a cartridge the clinic keeps using past its rating."""
    next_wear_report: int
    actuations: int = 0

    def wear_pct(self) -> float:
        # Running-in wear first (the needle edge dulls quickly), then a slowly
        # accelerating curve, so wear is monotone and reaches 100 near the rating.
        used = self.actuations / self.model.rated_actuations
        curve = 0.1 * (1.0 - math.exp(-20.0 * used)) + 0.9 * used * math.sqrt(used)
        return min(100.0, self.wear_at_rating_pct * curve)

    def life_used(self) -> float:
        return max(self.actuations / self.model.rated_actuations, self.wear_pct() / 100)

    def insertion_force_n(self) -> float:
        """The force the needles take to go in, rising as they dull."""
        return self.force_when_new_n * (1.0 + 1.5 * (self.wear_pct() / 100) ** 2)


def draw_cartridge(
    rng: random.Random,
    preferred: CartridgeModel,
    profile: SimulatorProfile,
    run_start: datetime,
) -> Cartridge:
    """The next cartridge a clinic installs: mostly its preferred model, made some
    months before the run started."""
    # One statement per draw, in the order the seeded stories were recorded with.
    model = preferred if rng.random() < 0.85 else pick_cartridge_model(rng)
    overused = rng.random() < profile.cartridge_overuse_probability
    cartridge_id = draw_cartridge_id(rng)
    wear_at_rating_pct = rng.uniform(90.0, 112.0)
    force_when_new_n = rng.uniform(1.9, 2.5)
    retire_at_life_used = rng.uniform(1.05, 1.3) if overused else profile.swap_at_life_used
    made = run_start - timedelta(days=draw_int(rng, 20, 150))
    lot = f"L{made:%y%m}{rng.choice('ABCD')}"
    return Cartridge(
        cartridge_id=cartridge_id,
        model=model,
        lot=lot,
        wear_at_rating_pct=wear_at_rating_pct,
        force_when_new_n=force_when_new_n,
        retire_at_life_used=retire_at_life_used,
        next_wear_report=profile.wear_report_every,
    )
