"""Tencent EdgeOne provider (teo 2022-09-01, official SDK)."""
