"""Exceptions for bad *input* (reported to the user as one clear line), as opposed to bugs.

Every user-facing error derives from ``MmatsError`` so the CLI can print ``error: <message>`` and exit
non-zero without a traceback, while an unexpected exception (a bug) still shows one.
"""

from __future__ import annotations


class MmatsError(Exception):
    """Base class of errors caused by what a user supplied (data, config, parameters)."""


class ValidationError(MmatsError, ValueError):
    """A value broke a documented constraint; the message names the field and the value."""


class DataError(MmatsError):
    """A market data file is unreadable or invalid; the message names file, row and column."""


class ConfigError(MmatsError):
    """Configuration is invalid; the message carries the field path."""


class StrategyError(MmatsError):
    """A strategy could not be found, loaded or configured."""


class StrategyRaised(StrategyError):
    """A strategy's own code raised while running: shown to the user as one line naming the bar and time,
    but counted as a failed run (a bug in the strategy), not as bad input, by sweeps and walk-forwards."""


class IllegalTransition(Exception):
    """An order was asked to move along an edge the state machine forbids: always a bug, never input."""
