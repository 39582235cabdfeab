"""DAMSM pre-training (SPEC §4): the text and image encoders learn a joint space of words and image
regions from the word loss (Eq. 11-13 on Eq. 10) plus the sentence loss."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attngan.checkpoints import build_component, load_weights, save_model
from attngan.config import Config
from attngan.data.dataset import TextImageDataset, open_datasets
from attngan.errors import ConfigError, TrainingError
from attngan.losses import (
    cosine_scores,
    hard_negative_loss,
    matching_loss,
    sentence_loss,
    word_loss,
    word_match,
)
from attngan.metrics import r_precision
from attngan.text import Vocabulary, WordSwapper
from attngan.training.loop import Loop, RunResult, batch_loader, resolve_device

log = logging.getLogger(__name__)


def damsm_lr(config: Config, epoch: int) -> float:
    """The release's schedule: ×``lr_decay`` after each epoch while above ``min_lr``."""
    d = config.damsm
    lr = d.lr
    for _ in range(epoch):
        if lr > d.min_lr:
            lr *= d.lr_decay
    return lr


@torch.no_grad()
def encode_split(
    dataset: TextImageDataset,
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    device: torch.device,
    batch_size: int = 100,
    workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global image and sentence features ``[N, D]`` of every item of an evaluation split (its
    fixed caption per item), with both encoders in eval mode."""
    was = text_encoder.training, image_encoder.training
    text_encoder.eval(), image_encoder.eval()
    indices = list(range(len(dataset)))
    plan = [indices[k : k + batch_size] for k in range(0, len(indices), batch_size)]
    images, sentences = [], []
    for batch in batch_loader(dataset, plan, workers):
        images.append(image_encoder(batch.images[-1].to(device)).image.float().cpu())
        text = text_encoder(batch.tokens.to(device), batch.length.to(device))
        sentences.append(text.sentence.float().cpu())
    text_encoder.train(was[0]), image_encoder.train(was[1])
    return torch.cat(images), torch.cat(sentences)


class DAMSMTrainer(Loop):
    """``attngan train-damsm``: Adam on both encoders, text-encoder gradient clipping, the
    release's learning-rate decay, R-precision on the test split every ``damsm.eval_every``
    epochs, and a ``damsm`` model folder at the end (``RUN/model``)."""

    name = "damsm"

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        device: str = "auto",
        on_step=None,
        progress: bool | None = None,
        evaluate: bool = True,
    ) -> None:
        super().__init__(run_dir, on_step, progress)
        self.config = config
        self.device = resolve_device(device)
        d = config.damsm
        self.batch_size, self.epochs, self.max_steps = d.batch_size, d.epochs, d.max_steps
        self.seed, self.checkpoint_every = config.train.seed, d.checkpoint_every
        self.keep, self.log_every = config.train.keep_checkpoints, config.train.log_every
        self.workers = config.data.workers
        self.evaluate = evaluate
        torch.manual_seed(self.seed)
        splits = ("train", "test") if evaluate else ("train",)
        data = open_datasets(config, splits, progress=progress is not False)
        self.vocab: Vocabulary = data.vocab
        self.dataset = data["train"]
        self.test = data["test"] if evaluate else None
        self.text_encoder = build_component("text_encoder", config, len(self.vocab))
        self.image_encoder = build_component("image_encoder", config, len(self.vocab))
        if config.model.image_encoder == "inception":
            if not d.inception_weights:
                raise TrainingError(
                    "the Inception image encoder needs ImageNet Inception-v3 weights: "
                    "--set damsm.inception_weights=PATH (torchvision's inception_v3_google-*.pth), "
                    "or use --set model.image_encoder=cnn"
                )
            self.image_encoder.load_inception_weights(d.inception_weights)
        self.text_encoder.to(self.device).train()
        self.image_encoder.to(self.device).train()
        params = [p for m in (self.text_encoder, self.image_encoder) for p in m.parameters()]
        self.optimizer = torch.optim.Adam(
            [p for p in params if p.requires_grad], lr=d.lr, betas=(d.beta1, d.beta2)
        )
        self.metrics: dict[str, float] = {}
        self.measured_step = -1
        self.swapper = None
        if d.swap_words and d.swap_weight:
            try:
                self.swapper = WordSwapper(d.swap_words, self.vocab)
            except ConfigError as exc:  # e.g. the shapes preset on another data set
                log.warning("%s: training without hard negatives", exc)

    def on_epoch_start(self, epoch: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = damsm_lr(self.config, epoch)

    def train_step(self, batch: Any) -> dict[str, float]:
        d = self.config.damsm
        images = batch.images[-1].to(self.device, non_blocking=True)
        if d.image_noise > 0:  # drawn from (seed, step): the same after a resume
            noise = torch.randn(images.shape, generator=self._step_generator(11)).to(self.device)
            images = images + d.image_noise * noise
        tokens = batch.tokens
        lengths = batch.length
        class_ids = batch.class_id.to(self.device)
        batch_size = tokens.size(0)
        swapped = None
        if self.swapper is not None:
            # the hard negatives ride in the same text-encoder pass, after the true captions
            rng = random.Random(hash((self.seed, self.step)))
            rows, swapped = self.swapper(tokens.tolist(), lengths.tolist(), rng)
            tokens = torch.cat([tokens, torch.tensor(rows, dtype=tokens.dtype)])
            lengths = torch.cat([lengths, lengths])
        tokens, lengths = tokens.to(self.device, non_blocking=True), lengths.to(self.device)
        if d.adversarial > 0:  # the true captions' worst images near the real ones
            own_rows = slice(0, batch_size)
            images = self._adversarial(images, tokens[own_rows], lengths[own_rows], class_ids)
        features = self.image_encoder(images)
        text = self.text_encoder(tokens, lengths)
        match = word_match(features.regions, text.words, lengths, d.gamma1, d.gamma2)
        # scores [B, B], or with hard negatives [B, 2B]
        word_scores = d.gamma3 * match.scores
        sent_scores = d.gamma3 * cosine_scores(features.image, text.sentence)
        own = slice(0, batch_size)  # the true captions' columns; the swapped ones follow
        words = matching_loss(word_scores[:, own], class_ids)
        sentence = matching_loss(sent_scores[:, own], class_ids)
        loss = words.total() + sentence.total()
        result = {"word": words.total().item(), "sent": sentence.total().item()}
        if swapped is not None:
            valid = torch.tensor(swapped, device=self.device)
            hard = sum(
                hard_negative_loss(s[:, own], s[:, batch_size:].diagonal(), valid, class_ids)
                for s in (word_scores, sent_scores)
            )
            loss = loss + d.swap_weight * hard
            result["swap"] = hard.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.text_encoder.parameters(), d.grad_clip)
        self.optimizer.step()
        return {"loss": loss.item(), **result}

    def _step_generator(self, offset: int) -> torch.Generator:
        """A CPU generator seeded by (seed, step) and ``offset`` (one per use): the same draws
        after a resume."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.step + offset)

    def _adversarial(
        self, images: Tensor, tokens: Tensor, lengths: Tensor, class_ids: Tensor
    ) -> Tensor:
        """``damsm.adversarial``: ``images`` moved within that distance per pixel to raise the
        matching loss (a random start drawn from (seed, step), then ``damsm.adversarial_steps``
        signed-gradient steps, each projected back: one of 1.25 times the distance, or PGD's
        steps of 2.5 / steps times it), detached; the encoders' weights get no gradient from the
        search."""
        d = self.config.damsm
        eps, steps = d.adversarial, d.adversarial_steps
        size = 1.25 * eps if steps == 1 else 2.5 * eps / steps
        start = torch.rand(images.shape, generator=self._step_generator(13)) * 2 - 1
        x = (images + eps * start.to(self.device)).clamp(-1, 1)
        with torch.no_grad():
            text = self.text_encoder(tokens, lengths)
        for _ in range(steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(self._matching_loss(x, text, lengths, class_ids), x)
            moved = x.detach() + size * grad.sign()
            x = torch.minimum(torch.maximum(moved, images - eps), images + eps).clamp(-1, 1)
        return x

    def _matching_loss(
        self, images: Tensor, text: Any, lengths: Tensor, class_ids: Tensor
    ) -> Tensor:
        """The word and sentence matching losses of ``images`` against the text encoder's
        output ``text`` for their captions (the adversarial search's objective)."""
        d = self.config.damsm
        f = self.image_encoder(images)
        words = word_loss(f.regions, text.words, lengths, class_ids, d.gamma1, d.gamma2, d.gamma3)
        return words.total() + sentence_loss(f.image, text.sentence, class_ids, d.gamma3).total()

    def on_epoch_end(self, epoch: int) -> None:
        if self.evaluate and (epoch + 1) % self.config.damsm.eval_every == 0:
            self.measure(epoch)

    def measure(self, epoch: int | None = None) -> dict[str, float]:
        """R-precision (1 true caption among 100, 10 folds) of real test images."""
        if self.test is None or len(self.test) < 100:
            return {}
        image, sentence = encode_split(
            self.test, self.text_encoder, self.image_encoder, self.device
        )
        r = r_precision(image, sentence, seed=self.seed)
        self.metrics = {"r_precision": r.mean, "r_precision_std": r.std}
        self.measured_step = self.step
        if self.stats is not None:
            self.stats.scalars(self.step, {"test/r_precision": r.mean}, epoch=epoch)
        log.info("step %d: test R-precision %.4f ± %.4f", self.step, r.mean, r.std)
        return self.metrics

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "metrics": self.metrics}

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        load_weights(self.text_encoder, folder / "text_encoder.safetensors")
        load_weights(self.image_encoder, folder / "image_encoder.safetensors")
        self.optimizer.load_state_dict(state["optimizer"])
        self.metrics = dict(state.get("metrics", {}))

    def write_model(self, folder: Path, final: bool) -> None:
        info = {"step": self.step, "metrics": self.metrics, "trained_by": "attngan train-damsm"}
        modules = {"text_encoder": self.text_encoder, "image_encoder": self.image_encoder}
        save_model(folder, "damsm", self.config, self.vocab, modules, info)

    def before_final_checkpoint(self) -> None:
        if self.evaluate and self.measured_step != self.step:
            self.measure()

    def finish(self) -> RunResult:
        model = self.run_dir / "model"
        self.write_model(model, final=True)
        log.info("DAMSM model written to %s", model)
        return RunResult(
            self.run_dir, self.step, "finished", self.last_checkpoint, model, self.metrics
        )
