"""A test provider plugin ("fake") that talks to tests/fakes/generic.py's FakeCdn over HTTP.

It is discovered like any third-party plugin, through the entry point declared in
``tests/plugins/prewarm_fake_plugin-0.1.0.dist-info`` (put ``tests/plugins`` on the path).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from prewarm_cli.errors import (
    AuthError,
    BatchTooLarge,
    InvalidRequest,
    NotFoundError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RetryableError,
    UnknownOutcome,
    UsageError,
)
from prewarm_cli.plugin import (
    BatchResult,
    Capability,
    ConfigField,
    Limits,
    Provider,
    Quota,
    State,
    SubmitOption,
    SubmitOptions,
    TaskStatus,
    UrlStatus,
    tls_context,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["FakeProvider"]

_TASK_STATES = {
    "QUEUED": State.PENDING,
    "RUNNING": State.RUNNING,
    "CANCELLED": State.CANCELLED,
}
_URL_STATES = {
    "queued": State.PENDING,
    "running": State.RUNNING,
    "ok": State.SUCCEEDED,
    "failed": State.FAILED,
}


class FakeProvider(Provider):
    name = "fake"
    description = "Test provider talking to the fake CDN server"
    capabilities = frozenset(
        {
            Capability.SUBMIT,
            Capability.STATUS,
            Capability.REPORT,
            Capability.QUOTA,
            Capability.LOOKUP,
            Capability.CANCEL,
            Capability.INVALIDATE,
        }
    )
    default_limits = Limits(max_batch=50, concurrency=4, poll_interval=0.2)
    credential_env = {"api_key": "FAKE_API_KEY"}
    config_schema = (
        ConfigField("endpoint", str, "base URL of the fake CDN API", required=True),
        ConfigField("api_key", str, "API key sent as X-Api-Key", secret=True),
        ConfigField("max_batch", int, "URLs per request the vendor accepts", default=50),
        ConfigField("rps", float, "vendor limit: requests per second"),
        ConfigField("ups", float, "vendor limit: URLs per second"),
        ConfigField("per_day", int, "vendor limit: requests per day"),
        ConfigField("lookup", bool, "whether the vendor can look URLs up", default=True),
        ConfigField("cancel", bool, "whether the vendor can cancel a task", default=True),
    )
    submit_options = (
        SubmitOption("fake-mode", "processing mode", choices=("fast", "thorough")),
        SubmitOption("fake-flag", "a boolean flag", type=bool, default=False),
    )

    def __init__(self, alias: str, settings: Any) -> None:
        super().__init__(alias, settings)
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    # --- declared facts ---

    def limits(self) -> Limits:
        s = self.settings
        return Limits(
            max_batch=int(s.get("max_batch") or 50),
            requests_per_second=_opt_float(s.get("rps")),
            urls_per_second=_opt_float(s.get("ups")),
            requests_per_day=None if s.get("per_day") is None else int(s["per_day"]),
            concurrency=4,
            poll_interval=0.2,
            # how long the fake vendor may take to list a task (FakeCdn.lookup_lag)
            lookup_settle=float(os.environ.get("FAKE_LOOKUP_SETTLE") or 0.0),
        )

    def active_capabilities(self) -> frozenset[Capability]:
        absent = {
            capability
            for capability, setting in (
                (Capability.LOOKUP, "lookup"),
                (Capability.CANCEL, "cancel"),
            )
            if self.settings.get(setting, True) is False
        }
        return self.capabilities - absent

    # --- the work ---

    def submit_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        body = {
            "urls": list(urls),
            "headers": dict(options.headers),
            "mode": options.extra.get("fake_mode"),
        }
        data, request_id = self._call("POST", "/v1/prefetch", body, submit=True)
        remaining = data.get("remaining")
        rejected = {r["url"]: r["reason"] for r in data.get("rejected") or []}
        quota = None
        if remaining is not None:
            quota = Quota(daily=None, remaining=int(remaining), source="last_response")
        return BatchResult.from_response(
            data.get("task_id"), urls, rejected=rejected, quota=quota, request_id=request_id
        )

    def fetch_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        return [self._purge_status(t) if t.startswith("p-") else self._status(t) for t in task_ids]

    def find_submitted(self, urls: Sequence[str], since: datetime) -> dict[str, str]:
        body = {"urls": list(urls), "since": since.isoformat()}
        data, _ = self._call("POST", "/v1/lookup", body)
        found = data.get("found") or {}
        return {u: str(found[u]) for u in urls if u in found}

    def quota(self) -> Quota:
        data, _ = self._call("GET", "/v1/quota")
        return Quota(daily=data.get("daily"), remaining=data.get("remaining"), source="api")

    def cancel(self, task_ids: Sequence[str]) -> dict[str, Any]:
        tasks = []
        for task_id in task_ids:
            data, _ = self._call("POST", f"/v1/tasks/{task_id}/cancel", {})
            tasks.append({"task_id": data.get("task_id", task_id), "state": data.get("state")})
        return {"provider": self.alias, "tasks": tasks}

    def invalidate_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        data, request_id = self._call("POST", "/v1/purge", {"urls": list(urls)}, submit=True)
        return BatchResult.from_response(data.get("task_id"), urls, request_id=request_id)

    def check(self) -> list[str]:
        quota = self.quota()
        return [f"quota: {quota.remaining} of {quota.daily} URLs left today"]

    def prepare(self) -> None:
        self._http()

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- helpers ---

    def _status(self, task_id: str) -> TaskStatus:
        data, _ = self._call("GET", f"/v1/tasks/{task_id}")
        raw_state = str(data.get("state"))
        cancelled = raw_state == "CANCELLED"
        urls: list[UrlStatus] = []
        for item in data.get("urls") or []:
            state = _URL_STATES.get(str(item.get("state")), State.PENDING)
            if cancelled and state is State.FAILED:
                state = State.CANCELLED
            urls.append(UrlStatus(item["url"], state, item.get("reason"), item.get("pop")))
        counts = dict.fromkeys(State, 0)
        for u in urls:
            counts[u.state] += 1
        failed = counts[State.FAILED] + counts[State.CANCELLED]
        if raw_state == "DONE":
            if failed == 0:
                state = State.SUCCEEDED
            elif failed == len(urls):
                state = State.FAILED
            else:
                state = State.PARTIAL
        else:
            state = _TASK_STATES.get(raw_state, State.PENDING)
        return TaskStatus(
            task_id=task_id,
            state=state,
            raw_state=raw_state,
            total=len(urls),
            succeeded=counts[State.SUCCEEDED],
            failed=failed,
            in_progress=counts[State.RUNNING],
            pending=counts[State.PENDING],
            urls=tuple(urls),
        )

    def _purge_status(self, task_id: str) -> TaskStatus:
        data, _ = self._call("GET", f"/v1/purges/{task_id}")
        raw_state = str(data.get("state"))
        done = raw_state == "DONE"
        failed = set(data.get("failed") or [])
        urls = tuple(
            UrlStatus(
                u,
                State.FAILED if u in failed else State.SUCCEEDED if done else State.RUNNING,
                "purge refused" if u in failed else None,
            )
            for u in data.get("urls", [])
        )
        state = State.RUNNING
        if done:
            state = State.PARTIAL if failed else State.SUCCEEDED
        return TaskStatus(
            task_id=task_id,
            state=state,
            raw_state=raw_state,
            total=len(urls),
            succeeded=len(urls) - len(failed) if done else 0,
            failed=len(failed),
            in_progress=0 if done else len(urls),
            urls=urls,
        )

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    base_url=str(self.settings["endpoint"]),
                    verify=tls_context(self.settings.get("ca_bundle")),
                    timeout=float(self.settings.get("timeout") or 30.0),
                    headers={"X-Api-Key": str(self.settings.get("api_key") or "")},
                )
            return self._client

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, submit: bool = False
    ) -> tuple[dict[str, Any], str | None]:
        """One request; the JSON answer and request id, or the typed error for the engine."""
        import httpx

        client = self._http()
        what = f"{method} {path}"
        try:
            response = client.request(method, path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the vendor: safe to send again.
            raise RetryableError(f"cannot connect for {what}: {exc}", provider=self.alias) from exc
        except httpx.TransportError as exc:
            # Sent, but no (complete) answer: the vendor may have acted on it.
            message = f"no answer to {what}: {type(exc).__name__}: {exc}"
            if submit:
                raise UnknownOutcome(message, provider=self.alias) from exc
            raise RetryableError(message, provider=self.alias) from exc
        request_id = response.headers.get("X-Request-Id")
        try:
            data = response.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.status_code == 200:
            return data, request_id
        self._raise(response, data, what, submit, request_id)

    def _raise(
        self,
        response: httpx.Response,
        data: dict[str, Any],
        what: str,
        submit: bool,
        request_id: str | None,
    ) -> NoReturn:
        status = response.status_code
        error = str(data.get("error") or "")
        message = str(data.get("message") or error or f"HTTP {status}")
        text = f"{what}: {message} (HTTP {status})"
        kw: dict[str, Any] = {"provider": self.alias, "request_id": request_id}
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if status == 401:
            raise AuthError(text, hint="check api_key or FAKE_API_KEY", **kw)
        if status == 429:
            raise RateLimited(text, retry_after=retry_after, **kw)
        if status == 403 and error == "quota_exhausted":
            raise QuotaExhausted(text, **kw)
        if status == 403:
            raise AuthError(text, **kw)
        if status == 503 and not submit:
            raise RetryableError(text, retry_after=retry_after, **kw)
        if status >= 500:
            if submit:
                raise UnknownOutcome(text, **kw)
            raise RetryableError(text, retry_after=retry_after, **kw)
        if status == 400 and error == "batch_too_large":
            limit = data.get("limit")
            raise BatchTooLarge(text, limit=int(limit) if limit is not None else None, **kw)
        if status == 400 and error == "invalid":
            urls = data.get("urls")
            named = {str(k): str(v) for k, v in urls.items()} if isinstance(urls, dict) else None
            raise InvalidRequest(text, urls=named or None, **kw)
        if status == 404:
            raise NotFoundError(text, **kw)
        if status == 409:
            task = what.split("/")[-2] if what.endswith("/cancel") else what
            raise UsageError(f"task {task} already finished", **kw)
        raise ProviderError(text, **kw)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
