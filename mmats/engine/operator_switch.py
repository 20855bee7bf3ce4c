"""The two-step switch from advisory (signals only) to operator (real orders).

Going live with real orders must be deliberate: the config must allow it (``allow_operator``), someone
requests the switch and gets a one-time token, and only a confirmation with that token within its time
to live switches. Going back to advisory needs no confirmation (it is always the safe direction), and an
automatic downgrade (router errors) persists across restarts like a manual one. The actor around it
journals and persists each change before it takes effect.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_TTL_S = 60.0
MODES = ("advisory", "operator")


@dataclass(frozen=True, slots=True)
class ModeChange:
    previous: str
    mode: str
    reason: str


class OperatorSwitch:
    def __init__(self, mode: str, allow_operator: bool, saved_mode: str | None = None,
                 ttl_s: float = TOKEN_TTL_S, clock: Callable[[], float] = time.time,
                 new_token: Callable[[], str] = lambda: secrets.token_urlsafe(8)) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "operator" and not allow_operator:
            raise ValueError("mode 'operator' needs allow_operator: true in the config")
        # A saved mode wins (an automatic downgrade survives a restart), but never grants operator
        # mode to a config that no longer allows it.
        if saved_mode in MODES and (saved_mode == "advisory" or allow_operator):
            mode = saved_mode
        self.mode = mode
        self.allow_operator = allow_operator
        self.ttl_s = ttl_s
        self._clock = clock
        self._new_token = new_token
        self._pending: tuple[str, float] | None = None

    @property
    def advisory(self) -> bool:
        return self.mode != "operator"

    def request(self) -> dict[str, object]:
        """Step one: a token that confirms the switch within ``ttl_s`` (a new request voids the old one)."""
        if not self.allow_operator:
            raise ValueError("operator mode is not allowed: set allow_operator: true in the config")
        token = self._new_token()
        self._pending = (token, self._clock() + self.ttl_s)
        return {"token": token, "expires_in_s": self.ttl_s}

    def confirm(self, token: str) -> ModeChange:
        """Step two: the token of the last request, before it expires; used once."""
        pending = self._pending
        if pending is None or not secrets.compare_digest(pending[0], token) or self._clock() > pending[1]:
            raise ValueError("operator confirmation token is missing, wrong or expired: request a new one")
        self._pending = None
        return self._to("operator", "confirmed by the two-step switch")

    def to_advisory(self, reason: str) -> ModeChange:
        """Back to signals only (manual, or automatic after router errors); voids a pending token."""
        self._pending = None
        return self._to("advisory", reason)

    def _to(self, mode: str, reason: str) -> ModeChange:
        change = ModeChange(self.mode, mode, reason)
        self.mode = mode
        return change
