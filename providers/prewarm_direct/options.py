"""Direct warming's extra `submit` options: variants and PoP targets for one run.

Kept apart from the provider, and named by the `prewarm.submit_options` entry point, so that
`prewarm submit --help` lists them without importing the provider or its SDK.
"""

from prewarm_cli.plugin import SubmitOption

SUBMIT_OPTIONS = (
    SubmitOption(
        "accept-encoding",
        "Accept-Encoding to warm (one request per value; e.g. identity).",
        multiple=True,
    ),
    SubmitOption(
        "resolve", "HOST[:PORT]:IP: warm through that IP, keeping Host and SNI.", multiple=True
    ),
    SubmitOption("pop", "CloudFront PoP code to warm (with cf_domain).", multiple=True),
    SubmitOption(
        "ecs", "Warm the edge a client in this CIDR gets (EDNS Client Subnet).", multiple=True
    ),
)
