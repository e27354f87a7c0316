"""All the URL inputs of one command in one object, read as one stream."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from prewarm_cli.errors import InputError, UsageError
from prewarm_cli.inputs.baseurl import INDEX_RULES, BaseUrl, IndexRule, RelPath
from prewarm_cli.inputs.distinct import DistinctUrls
from prewarm_cli.inputs.lines import check_readable, iter_arguments, iter_url_file
from prewarm_cli.inputs.validate import (
    MAX_KEPT_SKIPPED,
    InputUrl,
    InvalidInput,
    InvalidList,
    check_inputs,
)

if TYPE_CHECKING:  # each source's reader is imported when a spec uses it
    from prewarm_cli.inputs.synclog import LogNote

DEFAULT_SITEMAP_TIMEOUT = 30.0


@dataclass(frozen=True)
class InputSpec:
    """Where a command's URLs come from (DESIGN §4), checked for usage errors when built."""

    urls: tuple[str, ...] = ()  # URL arguments
    files: tuple[str, ...] = ()  # -i FILE|-
    sitemaps: tuple[str, ...] = ()  # --sitemap URL|FILE
    base_url: str | None = None  # maps the path sources below to URLs
    from_dirs: tuple[str, ...] = ()  # --from-dir DIR
    paths: tuple[str, ...] = ()  # --paths FILE|-
    sync_logs: tuple[str, ...] = ()  # --from-sync-log FILE|-
    strip_prefix: str | None = None  # for --paths and --from-sync-log
    index: IndexRule = "dir"
    excludes: tuple[str, ...] = ()  # --exclude GLOB, for --from-dir
    default_excludes: bool = True
    sitemap_timeout: float = DEFAULT_SITEMAP_TIMEOUT
    # CA bundles an https sitemap is verified with instead of the default store: verify's
    # --ca-bundle, or the ca_bundle of the providers a submit sends to.
    ca_bundles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "urls",
            "files",
            "sitemaps",
            "from_dirs",
            "paths",
            "sync_logs",
            "excludes",
            "ca_bundles",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.index not in INDEX_RULES:
            raise UsageError(f"--index must be one of {', '.join(INDEX_RULES)}, not {self.index!r}")
        has_paths = bool(self.from_dirs or self.paths or self.sync_logs)
        if has_paths and not self.base_url:
            raise UsageError(
                "--from-dir, --paths and --from-sync-log need --base-url",
                hint="give the URL the files are served under, e.g. --base-url https://cdn.example.com/",
            )
        if self.base_url and not has_paths:
            raise UsageError("--base-url maps --from-dir, --paths or --from-sync-log; none given")
        if self.index != "dir" and not has_paths:  # a URL given is warmed as it is written
            raise UsageError(
                "--index applies to --from-dir, --paths and --from-sync-log; none given"
            )
        if self.base_url:
            BaseUrl.parse(self.base_url)
        if self.strip_prefix is not None and not (self.paths or self.sync_logs):
            raise UsageError("--strip-prefix applies to --paths and --from-sync-log; none given")
        if (self.excludes or not self.default_excludes) and not self.from_dirs:
            raise UsageError("--exclude and --no-default-excludes apply to --from-dir; none given")
        n_stdin = sum(src.count("-") for src in (self.files, self.paths, self.sync_logs))
        if n_stdin > 1:
            raise UsageError("stdin ('-') can be read only once: give it to one option")

    def has_input(self) -> bool:
        """Whether any source is given (an empty file still counts)."""
        return any(
            (self.urls, self.files, self.sitemaps, self.from_dirs, self.paths, self.sync_logs)
        )

    def prefix(self) -> str:
        """The --strip-prefix as a directory ('public/'), '' when none; './public' is
        'public/', as a path './public/a.css' is 'public/a.css'."""
        text = "/".join(p for p in (self.strip_prefix or "").split("/") if p not in ("", "."))
        return text + "/" if text else ""


@dataclass
class InputNotes:
    """What reading skipped on purpose: not errors, told once on stderr after the read."""

    strip_prefix: str = ""
    outside_prefix: int = 0  # paths not under --strip-prefix
    unrecognised: InvalidList = field(default_factory=InvalidList)  # sync-log lines not understood
    # A sync log's failed uploads (a few, as a rule), kept as a job keeps its skipped inputs.
    failed_uploads: InvalidList = field(default_factory=lambda: InvalidList(MAX_KEPT_SKIPPED))

    @property
    def failed(self) -> InvalidList:
        """The failed uploads as stderr lists them."""
        return self.failed_uploads.trimmed()

    def messages(self) -> list[str]:
        """The warnings to print, one string each (a list indented below its first line)."""
        out = []
        if self.outside_prefix:
            where = f"--strip-prefix {self.strip_prefix!r}"
            paths = "path" if self.outside_prefix == 1 else "paths"
            out.append(f"{self.outside_prefix} {paths} not under {where} skipped")
        if self.failed:
            uploads = ("failed upload in the sync log", "failed uploads in the sync log")
            out.append(self.failed.message("skipped", what=uploads))
        if self.unrecognised:
            lines = ("sync-log line not understood", "sync-log lines not understood")
            out.append(self.unrecognised.message("ignored", what=lines))
        return out


def iter_inputs(
    spec: InputSpec, *, stdin: TextIO | None = None, notes: InputNotes | None = None
) -> Iterator[InputUrl | InvalidInput]:
    """Every source in order (arguments, -i files, sitemaps, directories, path lists, sync
    logs), streamed; not yet validated. Unreadable files and missing directories fail now,
    before anything is read."""
    for path in spec.files:
        if path != "-":
            check_readable(path, "URL file")
    if spec.sitemaps:
        from prewarm_cli.inputs.sitemap import check_sitemaps

        check_sitemaps(spec.sitemaps)
    if spec.from_dirs:
        from prewarm_cli.inputs.tree import check_directory

        for root in spec.from_dirs:
            check_directory(root)
    for path in spec.paths:
        if path != "-":
            check_readable(path, "path list")
    for path in spec.sync_logs:
        if path != "-":
            check_readable(path, "sync log")
    return _generate(spec, stdin, notes if notes is not None else InputNotes())


def _generate(
    spec: InputSpec, stdin: TextIO | None, notes: InputNotes
) -> Iterator[InputUrl | InvalidInput]:
    yield from iter_arguments(spec.urls)
    for path in spec.files:
        yield from iter_url_file(path, stdin)
    if spec.sitemaps:
        from prewarm_cli.inputs.sitemap import iter_sitemaps

        yield from iter_sitemaps(spec.sitemaps, spec.sitemap_timeout, spec.ca_bundles)
    if not spec.base_url:
        return
    from prewarm_cli.inputs.pathlist import iter_path_list
    from prewarm_cli.inputs.synclog import iter_sync_log
    from prewarm_cli.inputs.tree import iter_tree

    base = BaseUrl.parse(spec.base_url)
    notes.strip_prefix = spec.prefix()
    for root in spec.from_dirs:
        rels = _tree_paths(iter_tree(root, spec.excludes, spec.default_excludes), root)
        yield from _map(rels, base, spec.index, "", notes)
    for path in spec.paths:
        yield from _map(iter_path_list(path, stdin), base, spec.index, spec.prefix(), notes)
    for path in spec.sync_logs:
        # A --strip-prefix (. or ./: the synced directory is the working one) makes gsutil's
        # local paths keys; an empty one strips nothing and does not.
        log = iter_sync_log(path, stdin, strips_prefix=bool(spec.strip_prefix))
        yield from _map(log, base, spec.index, spec.prefix(), notes)


def _tree_paths(rels: Iterable[str], root: str) -> Iterator[RelPath | InvalidInput]:
    from prewarm_cli.inputs.tree import readable_name

    for rel in rels:
        path = os.path.join(root, rel)
        if readable_name(rel) is None:  # the URL is made of the path under root alone
            yield RelPath(rel, path, None)
        else:
            # The source shows the bytes; the input, as a terminal would show the name.
            name = os.fsencode(rel).decode("utf-8", "replace")
            reason = "the file name is not UTF-8 text, so no URL names it: rename the file"
            yield InvalidInput(name, readable_name(path) or path, None, reason)


def _map(
    items: Iterable[RelPath | InvalidInput | LogNote],
    base: BaseUrl,
    index: IndexRule,
    prefix: str,
    notes: InputNotes,
) -> Iterator[InputUrl | InvalidInput]:
    from prewarm_cli.inputs.synclog import LogNote

    for item in items:
        if isinstance(item, InvalidInput):
            yield item
            continue
        if isinstance(item, LogNote):
            if item.kind == "failed":
                notes.failed_uploads.add(item.item)
            else:
                notes.unrecognised.add(item.item)
            continue
        path = _without_dot_segments(item.path.lstrip("/"))
        if prefix:
            if not path.startswith(prefix):
                notes.outside_prefix += 1
                continue
            path = path[len(prefix) :]
        if "*" in path:  # kept as is in the URL (browsers send it so), where it reads as a wildcard
            yield InvalidInput(item.path, item.source, item.line, _STAR_IN_NAME)
            continue
        try:
            urls = base.urls(path, index)
        except ValueError as exc:
            yield InvalidInput(item.path, item.source, item.line, str(exc))
            continue
        for url in urls:
            yield InputUrl(url, item.source, item.line)


def _without_dot_segments(path: str) -> str:
    """``a/./b/../c`` as ``a/c``, a final '/' kept: --strip-prefix is matched against the path
    it names (``public/../public/z.js`` is under ``public/``). A '..' above the top is kept,
    for the base URL to refuse."""
    if "/." not in "/" + path:  # no segment begins with a dot: no . or .. segment
        return path
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept and kept[-1] != "..":
                kept.pop()
            else:
                kept.append(segment)
        elif segment not in (".", ""):  # an empty one too, as the base URL drops it
            kept.append(segment)
    resolved = "/".join(kept)
    return resolved + "/" if path.endswith(("/", "/.", "/..")) and resolved else resolved


_STAR_IN_NAME = (
    "a name with '*' cannot be warmed: CDNs read '*' in a URL as a wildcard;"
    " leave it out with --exclude (--from-dir), or pass --skip-invalid to submit"
)


def read_urls(
    spec: InputSpec,
    *,
    notes: InputNotes | None = None,
    stdin: TextIO | None = None,
    consequence: str = "nothing was sent",
    nothing: str | None = "no URLs given",
) -> DistinctUrls:
    """The distinct valid URLs in order, on disk past a few thousand (close them when done);
    InputError listing the invalid ones.

    No URL at all is an InputError saying ``nothing``, or no URL when that is None.
    """
    invalid = InvalidList()

    def valid() -> Iterator[str]:
        for item in check_inputs(iter_inputs(spec, stdin=stdin, notes=notes)):
            if isinstance(item, InvalidInput):
                invalid.add(item)
            else:
                yield item.url

    found = DistinctUrls()
    try:
        found.add(valid())
        if invalid:
            raise invalid.error(consequence)
        if not found and nothing is not None:
            raise InputError(nothing, hint=NO_INPUT_HINT)
    except BaseException:
        found.close()
        raise
    return found


NO_INPUT_HINT = (
    "pass URLs as arguments, with -i FILE (or - for stdin) or --sitemap, or files with "
    "--base-url and --from-dir, --paths or --from-sync-log"
)


def as_spec(
    urls: Sequence[str] = (), files: Sequence[str] = (), sitemaps: Sequence[str] = ()
) -> InputSpec:
    """An InputSpec of the three classic sources (for callers still passing them apart)."""
    return InputSpec(urls=tuple(urls), files=tuple(files), sitemaps=tuple(sitemaps))
