"""Benchmarks: each module is runnable with ``python -m bench.<name>`` and prints its
figures beside a baseline measured in the same run.  Results: ``BENCHMARKS.md``."""
