"""The prewarm commands, one module per family, and the index the root group loads them by.

`prewarm --help` reads only this index: no command module is imported until it runs.
"""

from __future__ import annotations


class CommandEntry:
    """Where a command lives, and the line `prewarm --help` lists it with.

    A plain class, not a NamedTuple or dataclass: it is built on every start-up.
    """

    __slots__ = ("short_help", "target")

    def __init__(self, target: str, short_help: str) -> None:
        self.target = target  # "module:attribute" of the click command
        self.short_help = short_help  # also the command's short help and first docstring line


COMMANDS: dict[str, CommandEntry] = {
    "submit": CommandEntry(
        "prewarm_cli.commands.submit:submit", "Send URLs to the CDNs' prefetch APIs."
    ),
    "status": CommandEntry(
        "prewarm_cli.commands.jobs:status",
        "Show a job's state: JOB, ALIAS:TASK_ID[,...], - (a submit JSON on stdin), or the latest.",
    ),
    "report": CommandEntry(
        "prewarm_cli.commands.jobs:report",
        "List every URL that failed or was rejected, with provider, PoP and reason.",
    ),
    "jobs": CommandEntry("prewarm_cli.commands.jobs:jobs", "List recent local jobs, newest first."),
    "quota": CommandEntry(
        "prewarm_cli.commands.providers:quota",
        "Show the daily quota, what remains and when it resets.",
    ),
    "scale": CommandEntry(
        "prewarm_cli.commands.providers:scale",
        "Show or set the number of warming instances (providers that have them).",
    ),
    "cancel": CommandEntry(
        "prewarm_cli.commands.jobs:cancel", "Stop a running job at the vendor (providers that can)."
    ),
    "verify": CommandEntry(
        "prewarm_cli.commands.verify:verify",
        "Check the CDNs' cache headers: is each URL warm where you stand?",
    ),
    "urls": CommandEntry(
        "prewarm_cli.commands.urls:urls",
        "Print the URLs the inputs resolve to; send nothing.",
    ),
    "providers": CommandEntry(
        "prewarm_cli.commands.providers:providers",
        "List installed provider types and configured aliases, with capabilities.",
    ),
    "config": CommandEntry(
        "prewarm_cli.commands.config:config", "Create, show and check the configuration file."
    ),
}


def short_help(name: str) -> str:
    """The one line that describes command `name`, in `prewarm --help` and its own help."""
    return COMMANDS[name].short_help
