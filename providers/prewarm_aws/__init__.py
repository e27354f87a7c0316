"""AWS CloudFront prewarm API provider (self-hosted, API Gateway + x-api-key)."""
