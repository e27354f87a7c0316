"""The aws provider: the self-hosted CloudFront prewarm API (aws-cloudfront-extensions)."""

from prewarm_aws.provider import AwsProvider

__all__ = ["AwsProvider"]
