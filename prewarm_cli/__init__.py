"""prewarm: pre-warm CDN caches across several CDNs with one command set."""

__version__ = "0.1.0"
