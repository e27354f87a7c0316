"""The edgeone provider: Tencent EdgeOne prefetch and purge (teo 2022-09-01)."""

from prewarm_edgeone.provider import EdgeOneProvider

__all__ = ["EdgeOneProvider"]
