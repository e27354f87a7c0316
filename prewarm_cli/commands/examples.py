"""The examples at the end of each command's --help: what a user types first."""

from __future__ import annotations


def examples(*lines: str) -> str:
    """An --help epilog of example command lines, kept as written (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


SUBMIT = examples(
    "prewarm submit https://www.example.com/app.js --wait --verify",
    "prewarm submit -i urls.txt -p qiniu --wait",
    "prewarm submit --from-dir dist --base-url https://static.example.com/",
    "git diff --name-only --diff-filter=d HEAD~1 -- public | prewarm submit --paths - \\",
    "    --strip-prefix public --base-url https://www.example.com/",
    "prewarm submit --dry-run --sitemap https://www.example.com/sitemap.xml",
    "prewarm submit --resume JOB  # sends what was deferred or left unsent",
)
STATUS = examples(
    "prewarm status  # the latest job",
    "prewarm status JOB --wait --verify",
    "prewarm submit -o json https://www.example.com/app.js | prewarm status --wait -",
    "prewarm status qiniu:REQUEST_ID",
)
REPORT = examples(
    "prewarm report  # the latest job's failures",
    "prewarm report JOB -o ndjson | jq -r .url > failed.txt",
)
CANCEL = examples("prewarm cancel JOB", "prewarm cancel aws:TASK_ID --wait")
JOBS = examples(
    "prewarm jobs",
    "prewarm jobs --state incomplete -o json | jq -r '.[].job_id'",
    "prewarm jobs --prune 30  # the journal keeps every job until pruned",
)
VERIFY = examples(
    "prewarm verify https://www.example.com/app.js",
    "prewarm verify -i urls.txt --expect-hit --accept-encoding gzip",
    "prewarm verify --resolve www.example.com:443:203.0.113.7 https://www.example.com/",
)
URLS = examples(
    "prewarm urls --from-dir dist --base-url https://static.example.com/",
    "git diff --name-only --diff-filter=d HEAD~1 -- public \\",
    "    | prewarm urls --paths - --strip-prefix public \\",
    "    --base-url https://www.example.com/",
    "prewarm urls --sitemap https://www.example.com/sitemap.xml -o json | jq length",
)
QUOTA = examples("prewarm quota", "prewarm quota -p edgeone -o json")
SCALE = examples("prewarm scale  # the instances now", "prewarm scale 0 --yes")
PROVIDERS = examples("prewarm providers", "prewarm providers -o json | jq -r '.[].type'")
