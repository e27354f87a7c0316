"""Writes docs/cli.md from the real `--help` of every command (`--check` fails when stale)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from prewarm_cli.cli import cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
HEADER = """# Command-line reference

Generated from `prewarm --help` by `scripts/gen_cli_docs.py`; do not edit by hand
(`tests/test_docs.py` fails when this page is stale). Options marked `[qiniu]`,
`[edgeone]` etc. come from provider plugins.
"""


def _walk(cmd: click.Command, path: list[str], parent: click.Context | None) -> list[str]:
    settings = {**cmd.context_settings, "terminal_width": 100, "max_content_width": 100}
    ctx = click.Context(cmd, info_name=path[-1], parent=parent, **settings)
    if isinstance(cmd, click.Group):
        # build lazily-assembled commands (e.g. submit's plugin options) as a user would
        names = cmd.list_commands(ctx)
        subs = [(n, cmd.get_command(ctx, n)) for n in names]
    else:
        subs = []
    title = " ".join(path)
    parts = [f"## `{title}`\n", "```text", cmd.get_help(ctx).rstrip(), "```\n"]
    for name, sub in subs:
        if sub is not None and not sub.hidden:
            parts.extend(_walk(sub, [*path, name], ctx))
    return parts


def render() -> str:
    return HEADER + "\n" + "\n".join(_walk(cli, ["prewarm"], None)) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is stale: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
