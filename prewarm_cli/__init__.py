"""prewarm: pre-warm CDN caches across several CDNs with one command set."""

__version__ = "0.1.0"

# Where a message sends the user to read more: the repository's files, reachable from any
# installation (a wheel ships neither config.example.toml nor docs/).
DOCS_URL = "https://github.com/prewarm/prewarm-cli/blob/main"
