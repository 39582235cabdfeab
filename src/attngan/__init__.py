"""attngan: AttnGAN text-to-image generation (Xu et al., CVPR 2018)."""

from attngan.errors import AttnGANError, ConfigError, DataError, VocabularyError

__version__ = "0.1.0"

__all__ = ["AttnGANError", "ConfigError", "DataError", "VocabularyError", "__version__"]
