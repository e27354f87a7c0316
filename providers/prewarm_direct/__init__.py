"""Direct warming: GET each URL through the CDN edge, optionally pinned to PoPs (DESIGN §9)."""

from prewarm_direct.provider import DirectProvider

__all__ = ["DirectProvider"]
