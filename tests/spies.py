"""Spies for tests that check what a program hands to the functions it calls."""


def recorded(real, record):
    """``real``, which first hands its arguments to ``record``."""
    def call(*args, **kwargs):
        record(*args, **kwargs)
        return real(*args, **kwargs)
    return call
