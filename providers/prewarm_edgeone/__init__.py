"""The edgeone provider: Tencent EdgeOne prefetch and purge (teo 2022-09-01).

The class is imported on first use (PEP 562), so that importing `prewarm_edgeone.options` for
`prewarm submit --help` does not import the provider.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prewarm_edgeone.provider import EdgeOneProvider

__all__ = ["EdgeOneProvider"]


def __getattr__(name: str) -> Any:
    if name == "EdgeOneProvider":
        from prewarm_edgeone.provider import EdgeOneProvider

        return EdgeOneProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
