"""Qiniu fusion CDN provider (/v2/tune/prefetch)."""
