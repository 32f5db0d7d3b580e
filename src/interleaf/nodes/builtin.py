"""Imports every built-in node kind so it registers."""

from interleaf.nodes import (
    assistant_turn,  # noqa: F401
    consistency,  # noqa: F401
    crucial_step,  # noqa: F401
    expansion,  # noqa: F401
    follow_up,  # noqa: F401
    global_judge,  # noqa: F401
    pair_judge,  # noqa: F401
    pairs,  # noqa: F401
    planner,  # noqa: F401
    pruning,  # noqa: F401
    seed_answers,  # noqa: F401
    stored_dialogue,  # noqa: F401
    turn_judge,  # noqa: F401
)
