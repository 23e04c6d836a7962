"""``coreline demo``: the whole platform on the embedded default in one command."""

from services.demo.run import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
