"""Kept while callers move to prewarm_cli.inputs: the names they import from here."""

from prewarm_cli.inputs import (
    MAX_URL_LENGTH,
    InputUrl,
    InvalidInput,
    check_inputs,
    host_of,
    is_ascii,
    to_ascii,
    unique,
    validate_url,
)

__all__ = [
    "MAX_URL_LENGTH",
    "InputUrl",
    "InvalidInput",
    "check_inputs",
    "host_of",
    "is_ascii",
    "to_ascii",
    "unique",
    "validate_url",
]
