"""EdgeOne's extra `submit` options: --mode and --media-segments.

Kept apart from the provider, and named by the `prewarm.submit_options` entry point, so that
`prewarm submit --help` lists them without importing the provider or its SDK.
"""

from prewarm_cli.plugin import SubmitOption

SUBMIT_OPTIONS = (
    SubmitOption(
        "mode",
        "prefetch to the middle tier only (default) or to the edge too (edge: an"
        " allow-listed feature with its own 1000 URLs/day)",
        choices=("default", "edge"),
    ),
    SubmitOption(
        "media-segments",
        "also prefetch the TS segments of M3U8 playlists (allow-listed feature)",
        type=bool,
        default=False,
    ),
)
