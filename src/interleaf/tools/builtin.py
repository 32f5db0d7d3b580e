"""Imports every built-in tool kind so it registers."""
