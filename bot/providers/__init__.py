"""Image-editing providers behind one interface; the core picks behaviour from
``ProviderCapabilities``, never from a provider's name."""

from bot.providers.base import (
    PredictionState,
    PredictionStatus,
    Provider,
    ProviderCapabilities,
    ProviderRequest,
)

__all__ = [
    "PredictionState",
    "PredictionStatus",
    "Provider",
    "ProviderCapabilities",
    "ProviderRequest",
]
