"""The prewarm commands: parse, call the core, render.

Kept apart from cli.py so that `prewarm --help` compiles and imports none of this;
each command is built on first use by cli.PrewarmGroup.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from prewarm_cli.cli import (
    CONTEXT_SETTINGS,
    PROVIDER_OPTIONS,
    PrewarmGroup,
    command_output,
    exit_with,
    global_options,
    global_values,
    workspace,
)
from prewarm_cli.errors import ConfigError, ExitCode, PrewarmError, UsageError, worst_exit

if TYPE_CHECKING:
    from prewarm_cli.engine import Workspace
    from prewarm_cli.output import Output


def url_inputs(f: Callable[..., Any]) -> Callable[..., Any]:
    """URL arguments, -i FILE and --sitemap: the same input for submit and verify."""
    f = click.option(
        "--sitemap",
        "sitemaps",
        multiple=True,
        metavar="URL|FILE",
        help="Read URLs from a sitemap or sitemap index (gzip ok). Repeatable.",
    )(f)
    f = click.option(
        "-i",
        "--input",
        "files",
        multiple=True,
        metavar="FILE",
        help="Read URLs from FILE, one per line (- for stdin). Repeatable.",
    )(f)
    return click.argument("urls", nargs=-1)(f)


# --------------------------------------------------------------------------- submit


def make_submit() -> click.Command:
    @click.command(context_settings=CONTEXT_SETTINGS)
    @url_inputs
    @click.option(
        "-p",
        "--provider",
        "providers",
        multiple=True,
        metavar="NAME",
        help="Provider alias; repeat for several CDNs (default: [[routes]], defaults.provider).",
    )
    @click.option(
        "-H",
        "--header",
        "headers",
        multiple=True,
        metavar="'Name: value'",
        help="Header the CDN sends to the origin when prefetching. Repeatable.",
    )
    @click.option("--invalidate", is_flag=True, help="Purge the URLs first, then prefetch them.")
    @click.option(
        "--skip-invalid", is_flag=True, help="Send the valid URLs and list the invalid ones."
    )
    @click.option("--dry-run", is_flag=True, help="Print the plan; send nothing.")
    @click.option("--wait", "wait_", is_flag=True, help="Wait until the vendors finish.")
    @click.option("--interval", type=float, metavar="S", help="Seconds between status polls.")
    @click.option(
        "--wait-timeout", type=float, metavar="S", help="Give up waiting after S seconds (exit 6)."
    )
    @click.option("--verify", is_flag=True, help="After waiting, check the URLs' cache status.")
    @click.option(
        "--force",
        is_flag=True,
        help="Allow limits above defaults, resending unknown batches, a 2nd job on a busy stack.",
    )
    @click.option(
        "--resume", metavar="JOB", help="Continue JOB: send what is deferred, unsent or failed."
    )
    @global_options
    def submit(
        urls: tuple[str, ...],
        files: tuple[str, ...],
        sitemaps: tuple[str, ...],
        providers: tuple[str, ...],
        headers: tuple[str, ...],
        invalidate: bool,
        skip_invalid: bool,
        dry_run: bool,
        wait_: bool,
        interval: float | None,
        wait_timeout: float | None,
        verify: bool,
        force: bool,
        resume: str | None,
        **extra: Any,
    ) -> None:
        """Send URLs to the CDNs' prefetch APIs.

        \b
        URLs come from arguments, -i FILE (or - for stdin) and --sitemap; they are
        validated and de-duplicated before anything is sent.
        """
        from prewarm_cli import engine
        from prewarm_cli.plugin import SubmitOptions

        if (verify or interval or wait_timeout) and not wait_:
            raise UsageError("--interval, --wait-timeout and --verify need --wait")
        if resume and (urls or files or sitemaps or providers):
            raise UsageError(
                "--resume takes no new URLs or providers; it continues the job as it was"
            )
        given_extra = {k: v for k, v in extra.items() if v is not None}
        options = SubmitOptions(
            headers=tuple(_parse_header(h) for h in headers),
            invalidate=invalidate,
            force=force,
            extra=given_extra,
        )
        req = engine.SubmitRequest(
            urls=urls,
            files=files,
            sitemaps=sitemaps,
            providers=providers,
            options=options,
            skip_invalid=skip_invalid,
        )
        with workspace(force=force) as ws:
            if not resume:
                _check_extra_options(ws, providers, given_extra)
            if dry_run:
                if resume:
                    raise UsageError("--dry-run cannot be combined with --resume")
                plan = engine.plan(ws, req)
                ws.out.emit(
                    plan,
                    table=lambda d: _plan_table(ws.out, d),
                    records=lambda d: list(d["providers"].values()),
                )
                return
            summary, code = engine.submit(ws, req, resume=resume)
            if not wait_:
                ws.out.emit(
                    summary, table=lambda d: _submit_table(ws.out, d), records=lambda d: d["tasks"]
                )
                exit_with(code)
            if ws.out.fmt == "table":
                _submit_table(ws.out, summary)
            ref = engine.parse_job_ref(ws, summary["job_id"], lambda: "")
            status, claims = engine.wait_with_claims(
                ws, ref, interval=interval, timeout=wait_timeout
            )
            result: dict[str, Any] = {**summary, "status": status}
            codes = {code, engine.status_exit(status["state"])}
            if verify:
                result["verify"], verify_code = _verify_claims(ws, claims)
                codes.add(verify_code)
            if ws.out.fmt == "table":
                _status_table(ws.out, status)
                if verify:
                    _verify_table(ws.out, result["verify"])
            else:
                ws.out.emit(result, records=lambda d: d["tasks"])
            exit_with(worst_exit(codes))

    return submit


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in name for c in " \t"):
        raise UsageError(f"header {text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def _check_extra_options(ws: Workspace, names: tuple[str, ...], given: dict[str, Any]) -> None:
    """An extra option no selected provider declares is a usage error."""
    if not given:
        return
    aliases = [ws.alias(n) for n in names] if names else ws.config.aliases()
    types = {ws.config.provider_type(a) for a in aliases}
    for key in given:
        owners = PROVIDER_OPTIONS.get(key, {}).get("types", set())
        if not owners & types:
            flag = "--" + key.replace("_", "-")
            raise UsageError(
                f"{flag} is an option of {', '.join(sorted(owners))}, not of the selected"
                f" provider(s) {', '.join(aliases)}"
            )


# --------------------------------------------------------------------------- status / report


def _stdin_text() -> str:
    return sys.stdin.read()


def make_status() -> click.Command:
    @click.command(context_settings=CONTEXT_SETTINGS)
    @click.argument("job", required=False)
    @click.option("--wait", "wait_", is_flag=True, help="Poll until the job is finished.")
    @click.option("--interval", type=float, metavar="S", help="Seconds between polls.")
    @click.option(
        "--wait-timeout", type=float, metavar="S", help="Give up after S seconds (exit 6)."
    )
    @click.option("--verify", is_flag=True, help="After waiting, check the URLs' cache status.")
    @click.option("--force", is_flag=True, help="Poll faster than the provider's polling budget.")
    @global_options
    def status(
        job: str | None,
        wait_: bool,
        interval: float | None,
        wait_timeout: float | None,
        verify: bool,
        force: bool,
    ) -> None:
        """Show a job's state: JOB, ALIAS:TASK_ID[,...], - (submit JSON on stdin), or the latest."""
        from prewarm_cli import engine

        with workspace(force=force) as ws:
            ref = engine.parse_job_ref(ws, job, _stdin_text)
            if wait_:
                result, claims = engine.wait_with_claims(
                    ws, ref, interval=interval, timeout=wait_timeout
                )
            else:
                result, claims = engine.status_with_claims(ws, ref)
            codes = {engine.status_exit(result["state"])}
            if verify:
                result["verify"], verify_code = _verify_claims(ws, claims)
                codes.add(verify_code)

            def table(d: dict[str, Any]) -> None:
                _status_table(ws.out, d)
                if "verify" in d:
                    _verify_table(ws.out, d["verify"])

            ws.out.emit(result, table=table, records=lambda d: list(d["providers"].values()))
            exit_with(worst_exit(codes))

    return status


def make_report() -> click.Command:
    @click.command(context_settings=CONTEXT_SETTINGS)
    @click.argument("job", required=False)
    @click.option(
        "--download", metavar="FILE", help="Save the vendor's own report file (where one exists)."
    )
    @global_options
    def report(job: str | None, download: str | None) -> None:
        """List every URL that failed or was rejected, with provider, PoP and reason."""
        from prewarm_cli import engine

        with workspace() as ws:
            ref = engine.parse_job_ref(ws, job, _stdin_text)
            result = engine.report(ws, ref)
            if download:
                engine.download_report(ws, result, download)
            ws.out.emit(
                result, table=lambda d: _report_table(ws.out, d), records=lambda d: d["failures"]
            )
            exit_with(ExitCode.INCOMPLETE if result["failures"] else ExitCode.OK)

    return report


# --------------------------------------------------------------------------- other commands


def make_jobs() -> click.Command:
    @click.command(context_settings=CONTEXT_SETTINGS)
    @click.option("--limit", type=int, default=20, show_default=True, help="How many jobs.")
    @click.option("--state", help="Only jobs in this state.")
    @global_options
    def jobs(limit: int, state: str | None) -> None:
        """List recent local jobs, newest first."""
        from prewarm_cli import engine

        with workspace() as ws:
            rows = engine.recent_jobs(ws, limit, state)
            ws.out.emit(
                rows,
                table=lambda d: ws.out.records(
                    d,
                    [
                        ("job", "job_id"),
                        ("state", "state"),
                        ("created", lambda r: r["created_at"][:19]),
                        ("providers", lambda r: ",".join(r["providers"])),
                        ("urls", "urls"),
                        ("accepted", "accepted"),
                        ("rejected", "rejected"),
                        ("deferred", "deferred"),
                    ],
                ),
            )

    return jobs


def make_quota() -> click.Command:
    @click.command(context_settings=CONTEXT_SETTINGS)
    @click.option(
        "-p",
        "--provider",
        "providers",
        multiple=True,
        metavar="NAME",
        help="Provider alias (default: every configured provider with a quota).",
    )
    @global_options
    def quota(providers: tuple[str, ...]) -> None:
        """Show the daily quota, what remains and when it resets."""
        from prewarm_cli import engine
        from prewarm_cli.plugin import Capability

        with workspace() as ws:
            if providers:
                aliases = [ws.alias(p) for p in providers]
            else:
                aliases = []
                for alias in ws.config.aliases():
                    try:
                        if Capability.QUOTA in ws.session(alias).capabilities:
                            aliases.append(alias)
                    except ConfigError as exc:  # e.g. its secret's variable is not set here
                        ws.out.warn(f"skipping {alias}: {exc}")
                if not aliases:
                    raise UsageError("no configured provider reports a quota; pass -p NAME")
            rows = engine.quota(ws, aliases)
            ws.out.emit(
                rows,
                table=lambda d: ws.out.records(
                    d,
                    [
                        ("provider", "provider"),
                        ("type", "type"),
                        ("daily", "daily"),
                        ("remaining", "remaining"),
                        ("resets at", "resets_at"),
                        ("batch", "batch"),
                        ("source", "source"),
                    ],
                ),
            )

    return quota


def make_scale() -> click.Command:
    @click.command(context_settings=CONTEXT_SETTINGS)
    @click.argument("count", type=click.IntRange(min=0), required=False)
    @click.option("-p", "--provider", metavar="NAME", help="Provider alias.")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @global_options
    def scale(count: int | None, provider: str | None, yes: bool) -> None:
        """Show or set the number of warming instances (providers that have them)."""
        from prewarm_cli import engine

        with workspace() as ws:
            alias = ws.selected([provider] if provider else [])[0]
            if count is not None and not yes:
                if not sys.stdin.isatty():
                    raise UsageError("setting the scale needs --yes when not on a terminal")
                click.confirm(f"Set {alias} to {count} instance(s)?", abort=True, err=True)
            result = engine.scale(ws, alias, count)
            ws.out.emit(result)

    return scale


def make_cancel() -> click.Command:
    @click.command(context_settings=CONTEXT_SETTINGS)
    @click.argument("job")
    @global_options
    def cancel(job: str) -> None:
        """Stop a running job at the vendor (providers that can)."""
        from prewarm_cli import engine

        with workspace() as ws:
            ref = engine.parse_job_ref(ws, job, _stdin_text)
            ws.out.emit(engine.cancel(ws, ref))

    return cancel


def make_verify() -> click.Command:
    @click.command(context_settings=CONTEXT_SETTINGS)
    @url_inputs
    @click.option(
        "--get",
        "use_get",
        is_flag=True,
        help="GET and download each body (counted, not kept) instead of HEAD.",
    )
    @click.option(
        "-H",
        "--header",
        "headers",
        multiple=True,
        metavar="'Name: value'",
        help="Extra request header. Repeatable.",
    )
    @click.option(
        "--accept-encoding",
        "encodings",
        multiple=True,
        metavar="ENC",
        help="Check this Accept-Encoding variant (gzip, br, identity, ...); one request per"
        " URL per value. Repeatable.",
    )
    @click.option(
        "--resolve",
        "--pop-resolve",
        "resolve",
        multiple=True,
        metavar="HOST[:PORT]:IP",
        help="Connect to IP for HOST, keeping Host and SNI (like curl). Repeatable.",
    )
    @click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="Requests in flight at once.",
    )
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=10.0,
        show_default=True,
        metavar="S",
        help="Seconds to connect, and per read.",
    )
    @click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="Retries after a connection error (nothing else is retried).",
    )
    @click.option(
        "--ca-bundle",
        type=click.Path(exists=True, dir_okay=False),
        metavar="FILE",
        help="PEM CA bundle to verify against (TLS is always verified).",
    )
    @click.option(
        "--expect-hit", is_flag=True, help="Exit 4 unless every URL is a 2xx hit or revalidated."
    )
    @global_options
    def verify(
        urls: tuple[str, ...],
        files: tuple[str, ...],
        sitemaps: tuple[str, ...],
        use_get: bool,
        headers: tuple[str, ...],
        encodings: tuple[str, ...],
        resolve: tuple[str, ...],
        concurrency: int,
        timeout: float,
        retries: int,
        ca_bundle: str | None,
        expect_hit: bool,
    ) -> None:
        """Request each URL and read the CDNs' cache headers: hit, miss, revalidated, bypass
        or unknown.

        \b
        Reads CloudFront X-Cache / X-Amz-Cf-Pop, EdgeOne EO-Cache-Status, Qiniu
        X-Qnm-Cache, RFC 9211 Cache-Status and generic X-Cache. Age alone proves
        nothing. Redirects are reported, not followed. See docs/verify.md.
        """
        from prewarm_cli import verify as verify_mod

        options = verify_mod.VerifyOptions(
            method="GET" if use_get else "HEAD",
            headers=tuple(_parse_header(h) for h in headers),
            encodings=encodings,
            resolve=resolve,
            concurrency=concurrency,
            timeout=timeout,
            retries=retries,
            ca_bundle=ca_bundle,
            expect_hit=expect_hit,
        )
        out = command_output()
        targets = verify_mod.read_urls(urls, files, sitemaps)
        total = verify_mod.planned_requests(len(targets), options)
        with out.progress(total, "verifying") as bar:
            result = verify_mod.verify(targets, options, progress=bar.advance)
        out.emit(
            result, table=lambda d: verify_mod.render_table(out, d), records=verify_mod.records
        )
        exit_with(verify_mod.exit_code(result, expect_hit))

    return verify


def make_providers() -> click.Command:
    @click.command(context_settings=CONTEXT_SETTINGS)
    @global_options
    def providers() -> None:
        """List installed provider types and configured aliases, with capabilities."""
        from prewarm_cli import config as config_mod
        from prewarm_cli import registry

        out = command_output()
        classes = registry.load_all(out.warn)
        cfg = config_mod.load_config(global_values().get("config"))
        rows = []
        for alias in cfg.aliases():
            ptype = cfg.provider_type(alias)
            rows.append(_provider_row(alias, ptype, classes.get(ptype), cfg, out.warn))
        configured_types = {r["type"] for r in rows}
        for ptype, cls in classes.items():
            if ptype not in configured_types:
                rows.append(_provider_row(None, ptype, cls))
        out.emit(
            rows,
            table=lambda d: out.records(
                d,
                [
                    ("alias", lambda r: r["provider"] or "-"),
                    ("type", "type"),
                    ("source", "source"),
                    ("version", "version"),
                    ("capabilities", lambda r: ", ".join(r["capabilities"])),
                ],
            ),
        )

    return providers


def _provider_row(
    alias: str | None,
    ptype: str,
    cls: Any,
    cfg: Any = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    from prewarm_cli import registry
    from prewarm_cli.engine import build_provider

    try:
        info = registry.plugin_info(ptype)
        source, version = info.source, info.version
    except PrewarmError:
        source, version = "not installed", None
    caps = sorted(str(c) for c in cls.capabilities) if cls else []
    if cls and alias and cfg is not None and warn is not None:
        try:  # a configured alias's capabilities may depend on its settings
            provider = build_provider(cfg, alias, warn)
            caps = sorted(str(c) for c in provider.active_capabilities())
            provider.close()
        except PrewarmError:
            pass  # e.g. a secret's variable is not set here: the type's capabilities
    return {
        "provider": alias,
        "type": ptype,
        "source": source,
        "version": version,
        "capabilities": caps,
    }


# --------------------------------------------------------------------------- config


def make_config() -> click.Command:
    @click.group(cls=PrewarmGroup, context_settings=CONTEXT_SETTINGS)
    @global_options
    def config() -> None:
        """Create, show and check the configuration file."""

    @config.command("path", context_settings=CONTEXT_SETTINGS)
    @global_options
    def config_path_cmd() -> None:
        """Print the config file path in use, and the state directory."""
        from prewarm_cli import config as config_mod

        path, how = config_mod.config_path(global_values().get("config"))
        out = command_output()
        data = {
            "config": str(path),
            "how": how,
            "exists": path.exists(),
            "state_dir": str(config_mod.state_dir(create=False)),
        }
        if out.fmt == "table":
            out.line(str(path))
            out.info(
                f"({'exists' if path.exists() else 'does not exist'}; chosen by {how};"
                f" state in {data['state_dir']})"
            )
        else:
            out.emit(data)

    @config.command("show", context_settings=CONTEXT_SETTINGS)
    @global_options
    def config_show() -> None:
        """Show every setting, where it came from; secrets redacted."""
        from prewarm_cli import config as config_mod
        from prewarm_cli import registry

        out = command_output()
        cfg = config_mod.load_config(global_values().get("config"))
        rows = config_mod.show_rows(cfg, registry.load_all(out.warn))
        out.emit(
            {"path": str(cfg.path), "exists": cfg.exists, "settings": rows},
            table=lambda d: out.table(
                ("key", "value", "source"),
                [(r["key"], r["value"], r["source"]) for r in d["settings"]],
                title=f"{cfg.path}" + ("" if cfg.exists else " (missing)"),
            ),
            records=lambda d: d["settings"],
        )

    @config.command("check", context_settings=CONTEXT_SETTINGS)
    @click.option("--online", is_flag=True, help="Also let each provider make one cheap request.")
    @global_options
    def config_check(online: bool) -> None:
        """Validate the config file and every provider's settings (exit 3 on errors)."""
        from prewarm_cli import config as config_mod
        from prewarm_cli.engine import build_provider

        out = command_output()
        cfg = config_mod.load_config(global_values().get("config"))
        if not cfg.exists:
            raise ConfigError(f"{cfg.path}: no config file", hint="create one: prewarm config init")
        results = []
        codes: set[ExitCode] = set()
        for alias in cfg.aliases():
            entry: dict[str, Any] = {
                "provider": alias,
                "type": cfg.provider_type(alias),
                "ok": True,
                "notes": [],
            }
            try:
                # providers validate their settings when built
                provider = build_provider(cfg, alias, out.warn)
                try:
                    if online:
                        entry["notes"] = provider.check()
                finally:
                    provider.close()
            except PrewarmError as exc:
                entry.update(ok=False, error=str(exc), hint=exc.hint)
                codes.add(exc.exit_code)
            results.append(entry)
        data = {"path": str(cfg.path), "ok": not codes, "providers": results}
        if out.fmt == "table":
            for r in results:
                if r["ok"]:
                    out.line(f"ok     {r['provider']} ({r['type']})")
                    for note in r["notes"]:
                        out.line(f"       {note}")
                else:
                    out.line(f"error  {r['provider']} ({r['type']}): {r['error']}")
            out.info(f"{cfg.path}: {'ok' if not codes else 'has errors'}")
        else:
            out.emit(data)
        exit_with(worst_exit(codes))

    @config.command("init", context_settings=CONTEXT_SETTINGS)
    @click.option("--type", "ptype", metavar="TYPE", help="Provider type, e.g. qiniu.")
    @click.option("--alias", metavar="NAME", help="Alias for the provider (default: the type).")
    @click.option(
        "--set",
        "values",
        multiple=True,
        metavar="KEY=VALUE",
        help="A provider setting (repeatable); secrets are best given as env:VAR.",
    )
    @click.option(
        "--default/--no-default", "make_default", default=True, help="Make it defaults.provider."
    )
    @click.option("--force", is_flag=True, help="Overwrite an existing config file.")
    @global_options
    def config_init(
        ptype: str | None,
        alias: str | None,
        values: tuple[str, ...],
        make_default: bool,
        force: bool,
    ) -> None:
        """Write a config file: interactive prompts on a terminal, or flags for scripts."""
        from prewarm_cli import config as config_mod
        from prewarm_cli import registry

        out = command_output()
        path, _how = config_mod.config_path(global_values().get("config"))
        interactive = sys.stdin.isatty() and not (ptype and values)
        classes = registry.load_all(out.warn)
        if not ptype:
            if not interactive:
                raise UsageError(
                    "config init needs --type when not on a terminal",
                    hint=f"installed types: {', '.join(classes) or 'none'}",
                )
            ptype = click.prompt("Provider type", type=click.Choice(sorted(classes)), err=True)
        if ptype not in classes:
            registry.load(ptype)  # raises the one-line error naming what is installed
        cls = classes[ptype]
        alias = alias or ptype
        answers: dict[str, Any] = {}
        for item in values:
            key, sep, raw = item.partition("=")
            if not sep:
                raise UsageError(f"--set {item!r} is not KEY=VALUE")
            answers[key.strip()] = _parse_value(raw.strip())
        if interactive:
            for fld in cls.config_schema:
                if fld.name in answers:
                    continue
                default = fld.default
                if fld.secret and fld.name in cls.credential_env:
                    if not fld.required:
                        continue  # read from its environment variable when absent
                    default = f"env:{cls.credential_env[fld.name]}"
                if not fld.required and default is None:
                    continue
                answers[fld.name] = _parse_value(
                    click.prompt(
                        f"{fld.name} ({fld.help})",
                        default=default,
                        hide_input=fld.secret,
                        show_default=not fld.secret or str(default).startswith("env:"),
                        err=True,
                    )
                )
        existing: dict[str, Any] = {}
        if path.exists() and force:
            import tomllib

            existing = tomllib.loads(path.read_text())
        data = dict(existing)
        data.setdefault("providers", {})[alias] = config_mod.provider_table(cls, answers)
        if make_default:
            data.setdefault("defaults", {})["provider"] = alias
        config_mod.write_config(path, data, overwrite=force)
        config_mod.load_config(str(path))  # what was written must load
        out.info(f"wrote {path} (mode 600); check it with `prewarm config check`")
        if out.fmt != "table":
            out.emit({"path": str(path), "provider": alias, "type": ptype})

    return config


def _parse_value(raw: str) -> Any:
    """TOML-ish values for --set and prompts: numbers, booleans, [lists], else text."""
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


# --------------------------------------------------------------------------- renderers


def _verify_claims(ws: Workspace, claims: dict[str, str]) -> tuple[dict[str, Any], ExitCode]:
    """--verify: probe the job's URLs and set the vendors' claims beside what was seen."""
    from prewarm_cli import verify as verify_mod

    options = verify_mod.VerifyOptions()
    with ws.out.progress(verify_mod.planned_requests(len(claims), options), "verifying") as bar:
        result = verify_mod.verify_against_claims(list(claims), claims, options, bar.advance)
    return result, verify_mod.exit_code(result)


def _verify_table(out: Output, result: dict[str, Any]) -> None:
    from prewarm_cli import verify as verify_mod

    verify_mod.render_table(out, result)


def _submit_table(out: Output, d: dict[str, Any]) -> None:
    rows = [
        (alias, p["total"], p["accepted"], p["rejected"], p["failed"], p["deferred"], p["unknown"])
        for alias, p in d["providers"].items()
    ]
    out.table(
        ("provider", "targets", "accepted", "rejected", "failed", "deferred", "unknown"),
        rows,
        title=f"job {d['job_id']}: {d['state']}",
    )
    for r in d["rejected"][:20]:
        out.line(f"rejected  {r['provider']}  {r['url']}  {r['reason']}")
    for r in d["failed"][:20]:
        out.line(f"failed    {r['provider']}  {r['url']}  {r['reason']}")
    more = len(d["rejected"]) + len(d["failed"]) - 40
    if more > 0:
        out.line(f"... and {more} more: prewarm report {d['job_id']}")


def _plan_table(out: Output, d: dict[str, Any]) -> None:
    rows = []
    for alias, p in d["providers"].items():
        q = p["quota"] or {}
        rows.append(
            (
                alias,
                p["urls"],
                p["batch_size"],
                p["batches"],
                p["requests"],
                p["estimated_seconds"],
                q.get("remaining"),
                p["would_defer"],
            )
        )
    out.table(
        (
            "provider",
            "urls",
            "batch",
            "batches",
            "requests",
            "est. seconds",
            "quota left",
            "would defer",
        ),
        rows,
        title=f"dry run: {d['urls']} URLs, nothing sent",
    )
    for alias, p in d["providers"].items():
        for note in p["notes"]:
            out.line(f"note  {alias}: {note}")


def _status_table(out: Output, d: dict[str, Any]) -> None:
    rows = [
        (
            alias,
            p["state"],
            p["raw_state"],
            p["total"],
            p["succeeded"],
            p["failed"],
            p["in_progress"],
            p["pending"],
            p["not_sent"],
        )
        for alias, p in d["providers"].items()
    ]
    out.table(
        (
            "provider",
            "state",
            "vendor state",
            "total",
            "succeeded",
            "failed",
            "in progress",
            "pending",
            "not sent",
        ),
        rows,
        title=f"job {d['job_id'] or '(vendor tasks)'}: {d['state']}",
    )


def _report_table(out: Output, d: dict[str, Any]) -> None:
    out.table(
        ("provider", "url", "pop", "reason"),
        [(f["provider"], f["url"], f["pop"], f["reason"]) for f in d["failures"]],
        title=f"job {d['job_id'] or '(vendor tasks)'}: {len(d['failures'])} failure(s)",
    )
    for alias, url in d.get("report_urls", {}).items():
        out.info(f"{alias} report: {url}")
