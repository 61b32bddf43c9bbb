"""BFL's key rule: its API host and regional siblings, on the API's own scheme and port."""

from __future__ import annotations

import pytest

from bot.providers.base import ProviderCapabilities
from bot.providers.bfl import BflProvider


@pytest.mark.parametrize(
    ("url", "gets_the_key"),
    [
        ("https://api.bfl.ai/v1/get_result?id=1", True),
        ("https://api.us1.bfl.ai/v1/get_result?id=1", True),  # a regional API host
        ("https://api.bfl.ai:443/v1/credits", True),  # the default port, spelt out
        ("http://api.bfl.ai/v1/get_result?id=1", False),  # a plain-http downgrade
        ("https://api.bfl.ai:8443/x", False),  # another port: another service
        ("https://delivery-us1.bfl.ai/results/x.png", False),  # result hosts never
        ("https://bfl.ai.evil.example/x", False),
        ("https://api.bfl.ai:99999/x", False),  # a port that cannot be
    ],
)
async def test_the_key_goes_only_to_the_api_itself(url: str, gets_the_key: bool) -> None:
    provider = BflProvider(
        base_url="https://api.bfl.ai",
        api_key="k",
        model="flux-kontext-pro",
        capabilities=ProviderCapabilities(),
    )
    try:
        assert provider.same_origin(url) is gets_the_key
    finally:
        await provider.aclose()
