"""Imports every built-in node kind so it registers."""

from interleaf.nodes import planner  # noqa: F401
