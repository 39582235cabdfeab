"""Captions -> images and word-attention maps: the inference pipeline.

    pipe = Pipeline.from_pretrained("runs/00001-shapes-gan/model")
    out = pipe(["a red circle at the top left", "a blue square"], num_images=4, seed=0)
    out.pil()[0].save("first.png")   # the last stage's image of caption 0, image 0
    out.save("generated")            # every stage, the attention figures and captions.json

Reproducibility: image j of caption c draws its noise (z and the conditioning's epsilon) from its
own seed, a hash of ``(seed, c, j)`` (:func:`image_seed`), and the rows of a batch never see each
other (rows are batched by caption length, so there is no padding). An image therefore depends only
on ``(seed, c, j)`` and the caption, not on ``batch_size`` or the other captions of the call (up to
float rounding, ~1e-7, of kernels that differ with the batch's size).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from attngan.config import Config
from attngan.fileio import write_text_atomic
from attngan.models import sample_noise
from attngan.models.inference import CPU_CHUNK_ELEMENTS, inference_copy
from attngan.text import EncodedCaption, Vocabulary

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.json"


def image_seed(seed: int, caption: int, image: int) -> int:
    """The noise seed of image ``image`` of caption ``caption`` in a call with ``seed``: 63 bits
    of numpy's SeedSequence hash of the three numbers (distinct triples -> distinct seeds)."""
    high, low = np.random.SeedSequence([seed, caption, image]).generate_state(2, np.uint32)
    return (int(high) << 31) ^ int(low)


@dataclass
class GenerationOutput:
    """What one call of :class:`Pipeline` made. Row ``n`` of every list and tensor is image
    ``image_index[n]`` of caption ``caption_index[n]`` (caption-major order)."""

    captions: list[str]  # [N] the caption of each image, as given
    images: list[Tensor]  # one [N, 3, s, s] per stage in [-1, 1], smallest first, on the CPU
    attention: list[Tensor]  # one [N, T, h, w] per refinement stage, h = the refined image's side
    tokens: list[list[str]]  # [N] the known words used (attention column k is tokens[n][k])
    unknown: list[list[str]]  # [N] unknown words, dropped
    truncated: list[list[str]]  # [N] known words cut off past data.max_words
    seeds: list[int]  # [N] each image's noise seed (see image_seed)
    caption_index: list[int]  # [N]
    image_index: list[int]  # [N]
    seed: int  # the call's seed (drawn at random when the call had seed=None)
    use_mean: bool = False

    def __len__(self) -> int:
        return len(self.captions)

    def pil(self, stage: int = -1) -> list[Image.Image]:
        """Every image of one stage (default: the last, largest) as RGB images."""
        from attngan.visualize import to_pil

        return [to_pil(image) for image in self.images[stage]]

    def attention_figure(self, n: int, cell: int = 96) -> Image.Image:
        """The per-word attention figure (paper Fig. 3) of row ``n``."""
        from attngan.visualize import attention_figure

        return attention_figure(
            [stage[n] for stage in self.images],
            self.tokens[n],
            [att[n] for att in self.attention],
            cell=cell,
        )

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write every stage's image, the attention figure and ``captions.json`` (see
        :func:`save_outputs`)."""
        return save_outputs(self, out_dir)


def save_outputs(output: GenerationOutput, out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/{c:03d}-{j:02d}-stage{k}-{size}px.png`` for every stage k,
    ``out_dir/{c:03d}-{j:02d}-attention.png`` (when the model has refinement stages) and
    ``out_dir/captions.json`` (caption, tokens, unknown words, seed and files of each image).
    Returns the paths written, ``captions.json`` last."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage_pils = [output.pil(k) for k in range(len(output.images))]
    written, entries = [], []
    for n in range(len(output)):
        stem = f"{output.caption_index[n]:03d}-{output.image_index[n]:02d}"
        files = []
        for k, stage in enumerate(stage_pils):
            files.append(f"{stem}-stage{k}-{stage[n].width}px.png")
            stage[n].save(out_dir / files[-1])
        if output.attention:
            files.append(f"{stem}-attention.png")
            output.attention_figure(n).save(out_dir / files[-1])
        written += [out_dir / f for f in files]
        entries.append(
            {
                "caption": output.captions[n],
                "caption_index": output.caption_index[n],
                "image_index": output.image_index[n],
                "tokens": output.tokens[n],
                "unknown": output.unknown[n],
                "truncated": output.truncated[n],
                "seed": output.seeds[n],
                "call_seed": output.seed,
                "use_mean": output.use_mean,
                "files": files,
            }
        )
    written.append(write_text_atomic(out_dir / CAPTIONS_FILE, json.dumps(entries, indent=2) + "\n"))
    return written


@contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block, then give them back their modes."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


class Pipeline:
    """Captions -> images of every stage and the word attention of every refinement stage.

    Args:
        generator, text_encoder: the networks (moved to ``device``; evaluated in eval mode, their
            own modes restored after each call).
        vocab: the vocabulary the text encoder was trained with.
        config: the model's config (``data.max_words`` caps the words of a caption).
        device: where the networks run; outputs always come back on the CPU.
        fold_batchnorm: generate with the generator's inference copy (see
            :func:`~attngan.models.inference.inference_copy`: BatchNorm folded, up-blocks as
            transposed convolutions, channels-last, on the CPU refinement stages in slices of
            the batch), made on the first call and again only once the generator's weights
            change; False generates with ``generator`` itself.
    """

    def __init__(
        self,
        generator: nn.Module,
        text_encoder: nn.Module,
        vocab: Vocabulary,
        config: Config,
        device: torch.device | str = "cpu",
        fold_batchnorm: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.fold_batchnorm = fold_batchnorm  # generate with the inference copy
        self.generator = generator.to(self.device)
        self._inference: tuple[tuple, nn.Module] | None = None  # (weights key, inference copy)
        self.text_encoder = text_encoder.to(self.device)
        self.vocab = vocab
        self.config = config

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu") -> Pipeline:
        """Load an ``attngan`` model folder (a ModelError for a missing path or another kind)."""
        from attngan.checkpoints import load_model

        model = load_model(
            path, kind="attngan", components=("generator", "text_encoder"), device=device
        )
        return cls(model["generator"], model["text_encoder"], model.vocab, model.config, device)

    save = staticmethod(save_outputs)

    def encode(self, caption: str, index: int = 0) -> tuple[EncodedCaption, list[str]]:
        """A caption's known words (at most ``data.max_words``, the first ones) and the known
        words cut off; a VocabularyError for an empty caption or one with no known word. ``index``
        names the caption in log messages."""
        encoded = self.vocab.encode(caption, strict=True)
        if encoded.unknown:
            log.warning("caption %d: unknown words dropped: %s", index, ", ".join(encoded.unknown))
        limit = self.config.data.max_words
        cut = encoded.tokens[limit:]
        if cut:
            log.warning(
                "caption %d: %d known words, the model takes %d; dropped: %s",
                index,
                len(encoded.tokens),
                limit,
                ", ".join(cut),
            )
            encoded = EncodedCaption(encoded.ids[:limit], encoded.tokens[:limit], encoded.unknown)
        return encoded, cut

    def __call__(
        self,
        captions: str | Sequence[str],
        num_images: int = 1,
        seed: int | None = 0,
        use_mean: bool = False,
        batch_size: int = 16,
    ) -> GenerationOutput:
        """``num_images`` images of each caption.

        Args:
            captions: one caption or a list of them.
            num_images: images per caption (>= 1).
            seed: the call's seed (>= 0); None draws one at random (kept in the output).
            use_mean: condition on the conditioning augmentation's mean instead of a sample.
            batch_size: images per forward pass; it does not change the images.
        """
        texts = [captions] if isinstance(captions, str) else list(captions)
        if not texts:
            raise ValueError("no captions given")
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("captions must be strings")
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1 (got {num_images})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be >= 0 or None (got {seed})")
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        encoded = [self.encode(text, c) for c, text in enumerate(texts)]
        rows = [(c, j) for c in range(len(texts)) for j in range(num_images)]
        seeds = [image_seed(seed, c, j) for c, j in rows]
        ids = [encoded[c][0].ids for c, _ in rows]

        per_row: dict[int, tuple[list[Tensor], list[Tensor]]] = {}
        generator = self.inference_generator()  # the inference copy is in eval mode already
        nets = [self.text_encoder] + ([generator] if generator is self.generator else [])
        with torch.inference_mode(), _eval_mode(*nets):
            for batch in _length_batches(ids, batch_size):
                images, attention = self._generate(
                    generator, [ids[n] for n in batch], [seeds[n] for n in batch], use_mean
                )
                for b, n in enumerate(batch):
                    per_row[n] = ([x[b] for x in images], [a[b] for a in attention])

        steps = max(len(i) for i in ids)
        order = range(len(rows))
        stage_images = [
            torch.stack([per_row[n][0][k] for n in order]) for k in range(len(per_row[0][0]))
        ]
        attention = [
            torch.stack([_pad_words(per_row[n][1][k], steps) for n in order])
            for k in range(len(per_row[0][1]))
        ]
        return GenerationOutput(
            captions=[texts[c] for c, _ in rows],
            images=stage_images,
            attention=attention,
            tokens=[list(encoded[c][0].tokens) for c, _ in rows],
            unknown=[list(encoded[c][0].unknown) for c, _ in rows],
            truncated=[list(encoded[c][1]) for c, _ in rows],
            seeds=seeds,
            caption_index=[c for c, _ in rows],
            image_index=[j for _, j in rows],
            seed=seed,
            use_mean=use_mean,
        )

    def inference_generator(self) -> nn.Module:
        """The generator to sample with: with ``fold_batchnorm``, the inference copy of
        ``self.generator`` (eval mode, BatchNorm folded, see ``Pipeline``), kept between calls and
        made again when ``self.generator`` is another module or any of its parameters or buffers
        was changed (in place, by ``load_state_dict``, an optimizer step or ``.to()``; changes
        through ``.data`` are invisible, call :meth:`clear_cache` after those); else
        ``self.generator``."""
        if not self.fold_batchnorm:
            return self.generator
        key = _weights_key(self.generator)
        cached = self._inference
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        chunk = CPU_CHUNK_ELEMENTS if self.device.type == "cpu" else None
        with _eval_mode(self.generator):
            copy = inference_copy(self.generator, chunk_elements=chunk)
        self._inference = None if key is None else (key, copy)
        return copy

    def clear_cache(self) -> None:
        """Forget the inference copy: the next call makes it again from ``self.generator``."""
        self._inference = None

    def encode_text(self, ids: list[list[int]]):  # -> TextFeatures
        """The text encoder's features of a batch of equally long captions (token ids), on the
        pipeline's device."""
        tokens = torch.tensor(ids, dtype=torch.int64, device=self.device)  # [b, T]
        lengths = torch.full((len(ids),), tokens.size(1), dtype=torch.int64, device=self.device)
        return self.text_encoder(tokens, lengths)

    def _generate(
        self, g: nn.Module, ids: list[list[int]], seeds: list[int], use_mean: bool
    ) -> tuple[list[Tensor], list[Tensor]]:
        """One batch of equally long captions -> per-stage images ``[b, 3, s, s]`` and per-stage
        attention ``[b, T, h, w]`` from generator ``g``, on the CPU."""
        text = self.encode_text(ids)
        noise = [sample_noise(1, g.z_dim, g.condition_dim, seed=s) for s in seeds]
        z = torch.cat([n.z for n in noise]).to(self.device)  # [b, z_dim]
        ca = torch.cat([n.ca for n in noise]).to(self.device)  # [b, condition_dim]
        out = g(z, text.sentence, text.words, text.mask, ca_noise=ca, use_mean=use_mean)
        images = [x.float().cpu().contiguous() for x in out.images]  # NCHW, not channels-last
        return images, [a.float().cpu().contiguous() for a in out.attention]


def _weights_key(module: nn.Module) -> tuple | None:
    """What changes when ``module``'s weights do: the module, and each parameter's and buffer's
    identity, storage and version counter (bumped by every in-place change). None for inference
    tensors, which have no version counter (never cached)."""
    tensors = [*module.parameters(), *module.buffers()]
    if any(t.is_inference() for t in tensors):
        return None
    return (id(module), *((id(t), t.data_ptr(), t._version, t.device) for t in tensors))


def _length_batches(ids: list[list[int]], batch_size: int) -> Iterator[list[int]]:
    """Row numbers in batches of at most ``batch_size`` rows whose captions have one length (no
    padding, so no row depends on another, even with the release's mask order)."""
    by_length: dict[int, list[int]] = {}
    for n, row in enumerate(ids):
        by_length.setdefault(len(row), []).append(n)
    for length in sorted(by_length):
        rows = by_length[length]
        for start in range(0, len(rows), batch_size):
            yield rows[start : start + batch_size]


def _pad_words(attention: Tensor, steps: int) -> Tensor:
    """``[t, h, w]`` -> ``[steps, h, w]`` with zero maps for the missing words."""
    missing = steps - attention.size(0)
    if missing == 0:
        return attention
    return torch.cat([attention, attention.new_zeros(missing, *attention.shape[1:])])
