"""``--from-sync-log``: the objects a sync tool uploaded, read from what it printed.

Understood: ``aws s3 sync``/``cp --recursive``/``mv`` (``upload:``, ``copy:``, ``move:``,
also after ``(dryrun) ``), rclone ``--combined`` (``+`` new, ``*`` changed), and
``gsutil rsync``/``gcloud storage rsync`` (``Copying SRC to gs://BUCKET/KEY``, ``Would copy``;
gsutil's ``Copying file://PATH [Content-Type=...]...``, PATH under the synced directory).
The object key is the path under the base URL. Deletions, downloads, unchanged files and
progress lines are ignored; failures (``upload failed:``, rclone ``!``) are skipped and
reported; any other line is reported as not understood, with its line number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal, NamedTuple, TextIO

from prewarm_cli.errors import InputError
from prewarm_cli.inputs.baseurl import RelPath
from prewarm_cli.inputs.lines import iter_lines
from prewarm_cli.inputs.validate import InvalidInput

FORMATS = "aws s3 sync/cp, rclone --combined, gsutil or gcloud storage rsync"

_OBJECT_LINES = (
    # aws s3: the source may be a local path or s3://; the key is everything after the bucket.
    # The bucket may be an access point's ARN, whose name follows 'accesspoint/' (after
    # 'outpost/ID/' on S3 on Outposts).
    re.compile(
        r"(?:\(dryrun\) )?(?:upload|copy|move): .+? to"
        r" s3://(?:arn:[^/\s]+:(?:outpost/[^/\s]+/)?accesspoint/[^/\s]+|[^/\s]+)/(?P<key>.+)"
    ),
    # gcloud storage, and gsutil's dry run, name the destination.
    re.compile(
        r"(?:Copying|Would copy) .+? to gs://[^/\s]+/(?P<key>.+?)"
        r"(?: \[Content-Type=[^\]]*\]\.\.\.)?"
    ),
    # gsutil names only the local file it copies (_LOCAL_ONLY).
    re.compile(r"Copying file://(?P<local>.+?)(?: \[Content-Type=[^\]]*\])?\.\.\."),
    # rclone --combined: '+' missing on the destination (copied), '*' different (updated).
    re.compile(r"[+*] (?P<key>.+)"),
)
_FAILED_LINES = (
    re.compile(r"(?:\(dryrun\) )?(?:upload|copy|move) failed: .*"),
    re.compile(r"! .+"),  # rclone: an error reading or hashing the file
)
_IGNORED_LINES = (
    re.compile(r"(?:\(dryrun\) )?(?:delete|download|download failed): .*"),
    re.compile(r"Completed [\d.]+ \S+/~?[\d.]+ \S+ .*"),  # aws progress
    re.compile(r"[=-] .+"),  # rclone: identical, or only on the destination
    re.compile(r"(?:Would remove|Removing) gs://.*"),
    re.compile(r"(?:Building synchronization state|Starting synchronization)\.*"),
    re.compile(r"Operation completed over .*"),
    re.compile(r"(?:[-/\\|] )?\[\d+(?:/\d+)? files\].*"),  # gsutil progress
    re.compile(r"Completed files \d+.*"),  # gcloud storage progress
)


class LogNote(NamedTuple):
    """A line that gives no URL but is worth telling: a failed upload, or not understood."""

    kind: Literal["failed", "unrecognised"]
    item: InvalidInput


# A local path is the key only once the synced directory is taken off (--strip-prefix):
# dist/index.html is index.html. Without it, the line is invalid input, not a guess.
_LOCAL_ONLY = (
    "gsutil names the local file, not the object: give the synced directory as --strip-prefix"
    " (e.g. --strip-prefix dist/, or --strip-prefix . for the working directory)"
)


def iter_sync_log(
    path: str, stdin: TextIO | None = None, *, strips_prefix: bool = False
) -> Iterator[RelPath | LogNote | InvalidInput]:
    """The keys uploaded, and the lines to report; InputError for a log in no known format.
    ``strips_prefix``: a --strip-prefix is given, so a local path can be read as a key."""
    n_known = 0
    first_unknown: list[str] = []
    for line in iter_lines(path, "sync log", stdin):
        # A terminal progress line ends in '\r' and the next line is written over it: a
        # captured log has both on one line.
        for text in (part.strip() for part in line.text.split("\r")):
            if not text:
                continue
            for pattern in _OBJECT_LINES:
                match = pattern.fullmatch(text)
                if match:
                    n_known += 1
                    key = match.groupdict().get("key")
                    if key is not None or strips_prefix:
                        yield RelPath(key or match["local"], line.source, line.number)
                    else:
                        yield InvalidInput(text, line.source, line.number, _LOCAL_ONLY)
                    break
            else:
                if any(p.fullmatch(text) for p in _FAILED_LINES):
                    n_known += 1
                    reason = "the upload failed; not warmed"
                    yield LogNote("failed", InvalidInput(text, line.source, line.number, reason))
                elif any(p.fullmatch(text) for p in _IGNORED_LINES):
                    n_known += 1
                else:
                    if len(first_unknown) < 3:
                        first_unknown.append(f"{line.source}:{line.number}: {text[:120]}")
                    reason = f"not a line of {FORMATS} output"
                    yield LogNote(
                        "unrecognised", InvalidInput(text, line.source, line.number, reason)
                    )
    if first_unknown and not n_known:
        raise InputError(
            f"{path if path != '-' else 'stdin'} is not the output of {FORMATS}:\n  "
            + "\n  ".join(first_unknown),
            hint="pass what the sync command printed, e.g. aws s3 sync ... | tee sync.log"
            " (gsutil and gcloud storage print it on stderr: ... 2>&1 | tee sync.log; rclone"
            " needs --combined -)",
        )
