"""Files shipped with the package: the bundled ``shapes`` model and the ``shapes`` classifier."""

from __future__ import annotations

from pathlib import Path

from attngan.errors import ModelError

ASSETS = Path(__file__).resolve().parent
BUNDLED_MODEL = "shapes-model"


def bundled_model() -> Path:
    """The folder of the bundled ``shapes`` model (an ``attngan`` model folder)."""
    path = ASSETS / BUNDLED_MODEL
    if not (path / "model.json").is_file():
        raise ModelError(f"the bundled shapes model is missing from this install ({path})")
    return path
