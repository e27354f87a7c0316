"""The workflow: from input URLs to paced vendor requests, and from vendor tasks to job states.

The engine talks to providers only through the plugin API. It owns batching,
pacing, retries, concurrency, multi-provider fan-out, the journal and resume
(DESIGN.md §4 and §8). One module per job: workspace (providers and routing),
intake and plan, the batch sender, submit, status and wait, and the smaller actions.
"""

from prewarm_cli.engine.actions import (
    cancel,
    download_report,
    every_quota,
    prune_jobs,
    quota,
    recent_jobs,
    report,
    scale,
    scale_alias,
)
from prewarm_cli.engine.claims import Claims
from prewarm_cli.engine.intake import SubmitRequest, intake
from prewarm_cli.engine.plan import plan
from prewarm_cli.engine.purge import PURGE_WAIT_SECONDS
from prewarm_cli.engine.status import (
    JobRef,
    combine_states,
    job_status,
    parse_job_ref,
    poll_interval,
    status_exit,
    status_with_claims,
    url_claims,
    wait_again,
    wait_with_claims,
)
from prewarm_cli.engine.submit import submit, submit_exit, submit_summary
from prewarm_cli.engine.workspace import ProviderSession, Router, Workspace, build_provider

__all__ = [
    "PURGE_WAIT_SECONDS",
    "Claims",
    "JobRef",
    "ProviderSession",
    "Router",
    "SubmitRequest",
    "Workspace",
    "build_provider",
    "cancel",
    "combine_states",
    "download_report",
    "every_quota",
    "intake",
    "job_status",
    "parse_job_ref",
    "plan",
    "poll_interval",
    "prune_jobs",
    "quota",
    "recent_jobs",
    "report",
    "scale",
    "scale_alias",
    "status_exit",
    "status_with_claims",
    "submit",
    "submit_exit",
    "submit_summary",
    "url_claims",
    "wait_again",
    "wait_with_claims",
]
