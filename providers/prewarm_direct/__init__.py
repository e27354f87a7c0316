"""Direct warming: GET each URL through the CDN edge, optionally pinned to PoPs (DESIGN §9).

The class is imported on first use (PEP 562), so that importing `prewarm_direct.options` for
`prewarm submit --help` does not import the provider.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prewarm_direct.provider import DirectProvider

__all__ = ["DirectProvider"]


def __getattr__(name: str) -> Any:
    if name == "DirectProvider":
        from prewarm_direct.provider import DirectProvider

        return DirectProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
