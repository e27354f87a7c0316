"""What both stack generations use of one alias: its settings, target, distributions, warnings.

The provider builds one :class:`StackContext` and hands it to the stack client of the
configured generation (:mod:`prewarm_aws.stack_v1` or :mod:`prewarm_aws.stack_v2`), with the
provider's pacing and warning channel, so that a stack needs nothing else of the provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prewarm_aws.distributions import DistributionChooser
from prewarm_aws.tables import Target
from prewarm_aws.transport import Transport

__all__ = ["StackContext", "key_hint"]


def key_hint(alias: str, output: str) -> str:
    """How to set the API key's value, which the stack's output does not show."""
    return (
        f"set providers.{alias}.api_key (or PREWARM_AWS_API_KEY) to the key's value:"
        f" `aws apigateway get-api-key --api-key <id> --include-value` ({output}, not the"
        " value)"
    )


@dataclass
class StackContext:
    """One alias's common settings, and the provider's pacing and warnings."""

    alias: str
    settings: Mapping[str, Any]
    endpoint: str  # checked: a base URL with its stage
    target: Target
    distributions: DistributionChooser
    pace: Callable[[], None]  # before every request
    warn: Callable[[str], None]
    _warned: set[str] = field(default_factory=set)

    @property
    def section(self) -> str:
        """The alias's config table, as error messages name it."""
        return f"providers.{self.alias}"

    def int_setting(self, key: str, default: int) -> int:
        value = self.settings.get(key)
        return default if value is None else int(value)

    def transport(self, endpoint: str, *, key_hint: str, **hints: str) -> Transport:
        """An API Gateway client for one of the stack's APIs; every request is paced."""
        transport = Transport(
            self.alias,
            endpoint,
            str(self.settings.get("api_key") or ""),
            timeout=float(self.settings.get("timeout") or 30.0),
            ca_bundle=self.settings.get("ca_bundle"),
            key_hint=key_hint,
            **hints,
        )
        transport.before_request = self.pace
        return transport

    def warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warn(text)

    def warn_about_target(self, consequence: str) -> None:
        """The target's note and its unknown PoP codes, with what such a code does here."""
        if self.target.note:
            self.warn_once("target", self.target.note)
        if self.target.unknown_pops:
            self.warn_once(
                "pops",
                f"{'PoP code' if len(self.target.unknown_pops) == 1 else 'PoP codes'}"
                f" {', '.join(self.target.unknown_pops)} in none of the solution's tables;"
                f" {consequence}",
            )

    def setup_notes(self) -> list[str]:
        """``config check``'s lines on the target and the distribution."""
        notes = [f"target: {self.target.describe()}"]
        if self.target.note:
            notes.append(self.target.note)
        if self.target.unknown_pops:
            notes.append(f"PoP codes in none of the tables: {', '.join(self.target.unknown_pops)}")
        notes.append(self.distributions.describe())
        checked = self.distributions.check_configured()
        if checked:
            notes.append(checked)
        return notes
