"""Qiniu fusion CDN provider (/v2/tune/prefetch)."""

from prewarm_qiniu.provider import QiniuProvider

__all__ = ["QiniuProvider"]
