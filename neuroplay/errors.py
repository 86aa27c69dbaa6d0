"""The project's own errors: what the user can fix. `neuroplay` prints them as one line and exits 2; any other
exception is a bug and shows its traceback."""

from __future__ import annotations


class NeuroplayError(Exception):
    """Base of every error that means bad input or a missing prerequisite, not a defect in the code."""


class UsageError(NeuroplayError, ValueError):
    """A bad flag, value or file name; the message names the flag or file and what is wrong."""


class SetupError(NeuroplayError, RuntimeError):
    """The machine lacks what a command needs (a display, the game's ROM); the message says what to do."""
