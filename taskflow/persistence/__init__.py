"""Persistence: this instance's records in memory (``store``), and moving them to and from the
shared backend (``scheduler``: the group-commit flusher, readiness, history reads).
"""
