"""attngan: AttnGAN text-to-image generation (Xu et al., CVPR 2018)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attngan.errors import AttnGANError, ConfigError, DataError, VocabularyError

if TYPE_CHECKING:
    from attngan.pipeline import GenerationOutput, Pipeline

__version__ = "0.1.0"

__all__ = [
    "AttnGANError",
    "ConfigError",
    "DataError",
    "GenerationOutput",
    "Pipeline",
    "VocabularyError",
    "__version__",
]

_LAZY = {"Pipeline": "attngan.pipeline", "GenerationOutput": "attngan.pipeline"}


def __getattr__(name: str) -> Any:
    """Import the inference pipeline (and torch) only when it is first used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attngan' has no attribute {name!r}")
