"""AWS CloudFront prewarm API provider (self-hosted, API Gateway + x-api-key).

Wraps the prewarm API that the aws-cloudfront-extensions solution deploys: API Gateway and
Lambdas in front of one SQS queue and one Auto Scaling group of download agents. The stack
counts every call against a 1000 requests/day usage plan, and has quirks documented in
docs/providers/aws.md; this package copes with them. The provider holds the client of the
configured API generation: :class:`~prewarm_aws.stack_v2.StackV2` for a 2024 stack (the
default), :class:`~prewarm_aws.stack_v1.StackV1` for ``api_version = 1`` (2023).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from prewarm_aws import stack_v2, stopped
from prewarm_aws.distributions import DistributionChooser, configured_cf_domain
from prewarm_aws.shared import StackContext
from prewarm_aws.stack_v1 import StackV1
from prewarm_aws.stack_v2 import StackV2
from prewarm_aws.tables import resolve_target
from prewarm_aws.transport import check_endpoint
from prewarm_cli.errors import ConfigError, UnsupportedError
from prewarm_cli.plugin import (
    BatchResult,
    Capability,
    ConfigField,
    Limits,
    Provider,
    Report,
    SubmitOptions,
    TaskStatus,
    config_errors,
)

__all__ = ["AwsProvider", "api_version"]


class AwsProvider(Provider):
    name = "aws"
    description = "Self-hosted CloudFront prewarm API (aws-cloudfront-extensions, x-api-key)"
    # What a 2024 stack offers; an alias's own set is its stack's (active_capabilities).
    # No INVALIDATE: the API invalidates inside the prefetch request itself (need_invalidate).
    capabilities = StackV2.capabilities
    default_limits = stack_v2.LIMITS
    credential_env = {"api_key": "PREWARM_AWS_API_KEY"}
    config_schema = (
        ConfigField(
            "endpoint",
            str,
            "the API's base URL with the stage, e.g."
            " https://abc123.execute-api.us-east-1.amazonaws.com/prod",
            required=True,
        ),
        ConfigField(
            "api_key", str, "the API key's value (sent as x-api-key)", required=True, secret=True
        ),
        ConfigField(
            "api_version",
            int,
            "2 for the 2024 stack, 1 for a first-generation (2023) stack",
            default=2,
            choices=(1, 2),
        ),
        ConfigField(
            "status_endpoint",
            str,
            "api_version = 1 only: the status API's base URL with the stage (GET /status)",
        ),
        ConfigField(
            "cf_domain",
            str,
            "the distribution's dXXXX.cloudfront.net name; absent: found from the URLs' host",
        ),
        ConfigField(
            "target_type",
            str,
            "where to warm: pop | region | country",
            required=True,
            choices=("pop", "region", "country"),
        ),
        ConfigField("pops", list, "PoP codes, with target_type = pop", item_type=str),
        ConfigField("regions", list, "region keys, with target_type = region", item_type=str),
        ConfigField("countries", list, "country keys, with target_type = country", item_type=str),
        ConfigField("instance_count", int, "download instances a job starts (1-300)", default=1),
        ConfigField(
            "timeout_minutes", int, "the stack stops a job after this many minutes", default=60
        ),
        ConfigField("aws_profile", str, "AWS profile used to look cf_domain up"),
    )
    one_job_at_a_time = True  # a 2024 stack; set per alias from its stack
    # Both generations purge within the prefetch job (a 2024 stack with need_invalidate, a
    # first-generation one always): --invalidate needs no separate purge step.
    invalidates_in_submit = True

    @classmethod
    def config_problems(cls, alias: str, settings: Mapping[str, Any]) -> list[ConfigError]:
        """The endpoint, the target (type and lists) and cf_domain, each checked on its own;
        a stack generation's own keys are checked as the provider is made."""
        endpoint = str(settings.get("endpoint") or "")
        china = (urlsplit(endpoint).hostname or "").endswith(".amazonaws.com.cn")
        target_lists = {k: settings.get(k) for k in ("pops", "regions", "countries")}
        target_type = str(settings.get("target_type") or "")
        return config_errors(
            lambda: check_endpoint(alias, endpoint),
            lambda: resolve_target(alias, target_type, target_lists, china_stack=china),
            lambda: configured_cf_domain(alias, settings.get("cf_domain"), china=china),
        )

    def __init__(self, alias: str, settings: Mapping[str, Any]) -> None:
        super().__init__(alias, settings)
        s = self.settings
        endpoint = check_endpoint(alias, str(s["endpoint"]))
        china = (urlsplit(endpoint).hostname or "").endswith(".amazonaws.com.cn")
        profile = s.get("aws_profile")
        ctx = StackContext(
            alias=alias,
            settings=self.settings,
            endpoint=endpoint,
            target=resolve_target(
                alias,
                str(s.get("target_type") or ""),
                {k: s.get(k) for k in ("pops", "regions", "countries")},
                china_stack=china,
            ),
            distributions=DistributionChooser(
                alias,
                configured_cf_domain(alias, s.get("cf_domain"), china=china),
                str(profile) if profile else None,
                s.get("ca_bundle"),
            ),
            pace=self.pace,
            warn=self.warn,
        )
        self.stack: StackV1 | StackV2 = StackV1(ctx) if api_version(s) == 1 else StackV2(ctx)
        # Per alias, as the plugin API allows (declared a ClassVar there).
        self.one_job_at_a_time = self.stack.one_job_at_a_time  # type: ignore[misc]
        self.sends_headers = self.stack.sends_headers  # type: ignore[misc]
        self._lock = threading.Lock()  # one job request at a time

    # --- declared facts: the stack's ---

    def active_capabilities(self) -> frozenset[Capability]:
        return self.stack.capabilities

    def limits(self) -> Limits:
        return self.stack.limits

    def require(self, capability: Capability) -> None:
        note = self.stack.unsupported_note
        # The note says why a 2024 stack's routes are missing; what neither has, it does not.
        missing_route = capability in type(self).capabilities - self.active_capabilities()
        if missing_route and note:
            raise UnsupportedError(
                f"{self.alias} ({self.name}, api_version = 1) does not support {capability}:"
                f" {note}",
                provider=self.alias,
            )
        super().require(capability)

    # --- the work: the stack's ---

    def submit_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        with self._lock:
            return self.stack.submit(urls, options)

    def plan_notes(self, options: SubmitOptions) -> list[str]:
        return self.stack.plan_notes(options)

    def first_job(self, urls: Sequence[str]) -> tuple[int, Mapping[str, str]]:
        """One distribution's URLs make a job (ListDistributions without cf_domain)."""
        if not isinstance(self.stack, StackV2):
            return len(urls), {}
        job, rejected = self.stack.split(urls)
        return len(job.chosen), rejected

    def fetch_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        if isinstance(self.stack, StackV2):
            return self.stack.fetch_status(task_ids, stopped.stopped_here(self.state_dir))
        return self.stack.fetch_status(task_ids)

    def report(self, task_ids: Sequence[str]) -> Report:
        return self.stack.report(task_ids)

    def busy(self) -> str | None:
        return self.stack.busy()

    def scale(self, count: int | None) -> dict[str, Any]:
        return self._stack_v2(Capability.SCALE).scale(count)

    def cancel(self, task_ids: Sequence[str]) -> dict[str, Any]:
        result = self._stack_v2(Capability.CANCEL).cancel(task_ids)
        stopped.remember(self.state_dir, [str(t["task_id"]) for t in result["tasks"]])
        return result

    def _stack_v2(self, capability: Capability) -> StackV2:
        """The 2024 stack, for what only it can do."""
        self.require(capability)
        assert isinstance(self.stack, StackV2)  # the only one with the capability
        return self.stack

    def check(self) -> list[str]:
        return self.stack.check()

    def prepare(self) -> None:
        self.stack.prepare()

    def close(self) -> None:
        self.stack.close()


def api_version(settings: Mapping[str, Any]) -> int:
    """The configured API generation: 2 unless the config says 1."""
    value = settings.get("api_version")
    return 1 if value in (1, "1") else 2
