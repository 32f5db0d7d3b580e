"""Imports every built-in tool kind so it registers."""

from interleaf.tools import (
    images,  # noqa: F401
    retrieval,  # noqa: F401
)
