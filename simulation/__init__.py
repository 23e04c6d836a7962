"""Simulated handpieces for ``coreline simulate`` and ``coreline demo``: nothing here
runs on a handpiece.

A ``HandpieceSimulator`` tells a seeded, deterministic story (sessions, punches, wear,
cartridge swaps, faults, heartbeats) behind the agent's device port; a
``FleetSimulation`` runs many of them, each with a real agent link to the broker.
Dependencies run one way, ``{schemas, transport, edge_agent} ← simulation``: the agent
package never imports this one, so it stays light on a handpiece.
"""

from simulation.device_keys import simulated_key
from simulation.fleet import FleetPlan, FleetProgress, FleetSimulation
from simulation.handpiece import HandpieceSimulator
from simulation.ids import fleet_device_ids
from simulation.profile import SimulatorCounters, SimulatorProfile

__all__ = [
    "FleetPlan",
    "FleetProgress",
    "FleetSimulation",
    "HandpieceSimulator",
    "SimulatorCounters",
    "SimulatorProfile",
    "fleet_device_ids",
    "simulated_key",
]
