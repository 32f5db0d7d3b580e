"""Fixtures shared by the fault tests."""

from tests.faults.corpus import sim_graph_env

__all__ = ["sim_graph_env"]
