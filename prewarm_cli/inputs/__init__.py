"""URL inputs (DESIGN §4): arguments, files, stdin, sitemaps, and the files of a deploy
(build directories, path lists, sync logs) mapped through ``--base-url``; validation and
de-duplication.

Commands and the engine pass one :class:`InputSpec` and read one stream with
:func:`iter_inputs` (or :func:`read_urls` for the distinct URLs, on disk when many);
:class:`InvalidList` is the one way invalid input is counted and listed.
"""

from prewarm_cli.inputs.baseurl import INDEX_RULES, BaseUrl, IndexRule, RelPath
from prewarm_cli.inputs.distinct import DistinctUrls
from prewarm_cli.inputs.pathlist import unquote_git_path
from prewarm_cli.inputs.spec import (
    NO_INPUT_HINT,
    InputNotes,
    InputSpec,
    as_spec,
    iter_inputs,
    read_urls,
)
from prewarm_cli.inputs.validate import (
    ARGUMENT_SOURCE,
    MAX_KEPT_SKIPPED,
    MAX_LISTED_INVALID,
    MAX_URL_LENGTH,
    STDIN_SOURCE,
    InputUrl,
    InvalidInput,
    InvalidList,
    check_inputs,
    host_of,
    is_ascii,
    match_key,
    to_ascii,
    validate_url,
)

__all__ = [
    "ARGUMENT_SOURCE",
    "INDEX_RULES",
    "MAX_KEPT_SKIPPED",
    "MAX_LISTED_INVALID",
    "MAX_URL_LENGTH",
    "NO_INPUT_HINT",
    "STDIN_SOURCE",
    "BaseUrl",
    "DistinctUrls",
    "IndexRule",
    "InputNotes",
    "InputSpec",
    "InputUrl",
    "InvalidInput",
    "InvalidList",
    "RelPath",
    "as_spec",
    "check_inputs",
    "host_of",
    "is_ascii",
    "iter_inputs",
    "match_key",
    "read_urls",
    "to_ascii",
    "unquote_git_path",
    "validate_url",
]
