"""API Gateway in front of the AWS prewarm Lambdas: what both stack generations' fakes share.

The API key, the usage plan (a token bucket of ``rps`` with a ``burst``, each refusal counted as
a violation, and an optional daily request quota) and API Gateway's own error bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from fakes.base import Reply


def missing_token() -> Reply:
    """API Gateway's answer to a route or method it does not know."""
    return Reply(403, {"message": "Missing Authentication Token"})


class _Fault(Protocol):
    kind: str


F = TypeVar("F", bound=_Fault)


class ApiGateway:
    """The usage plan of one API key; a fake stack calls admit() before its Lambda runs."""

    api_key: str
    rps: float
    burst: int
    daily_quota: int | None
    daily_used: int

    def init_usage_plan(
        self, api_key: str, rps: float, burst: int, daily_quota: int | None
    ) -> None:
        self.api_key = api_key
        self.rps = rps
        self.burst = burst
        self.daily_quota = daily_quota
        self.daily_used = 0
        self._violations: list[dict[str, Any]] = []
        self._tokens = float(burst)
        self._bucket_at: float | None = None

    def admit(
        self,
        headers: dict[str, str],
        now: float,
        take_fault: Callable[[], F | None],
        **seen: Any,
    ) -> tuple[Reply | None, F | None]:
        """API key, throttling, quota: API Gateway's refusal, or None and the fault to inject.

        ``seen`` goes into a violation's record (e.g. which API was throttled).
        """
        if headers.get("x-api-key") != self.api_key:
            return Reply(403, {"message": "Forbidden"}), None
        if self._throttled(now, seen):
            return Reply(429, {"message": "Too Many Requests"}), None
        fault = take_fault()
        kind = fault.kind if fault is not None else None
        if kind == "429":
            return Reply(429, {"message": "Too Many Requests"}), fault
        over = self.daily_quota is not None and self.daily_used >= self.daily_quota
        if over or kind == "limit":
            return Reply(429, {"message": "Limit Exceeded"}), fault
        self.daily_used += 1
        return None, fault

    def _throttled(self, now: float, seen: dict[str, Any]) -> bool:
        """The token bucket: ``burst`` tokens, refilled at ``rps`` per second."""
        if self._bucket_at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._bucket_at) * self.rps)
        self._bucket_at = now
        if self._tokens < 1:
            self._violations.append({"t": now, "tokens": self._tokens, "rps": self.rps, **seen})
            return True
        self._tokens -= 1
        return False
