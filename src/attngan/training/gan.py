"""Attentional GAN training (SPEC §7) with frozen DAMSM encoders.

Each step: text features from the frozen text encoder; the generator's images at every scale; each
discriminator updated on (real, fake, mismatched); then the generator updated on the sum over
scales + λ·(DAMSM word + sentence loss of the last-stage fakes) + KL; then the EMA generator.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attngan.checkpoints import (
    MODEL_FILE,
    build_component,
    load_model,
    load_weights,
    save_model,
    save_weights,
)
from attngan.config import Config
from attngan.data.dataset import open_datasets
from attngan.errors import ModelError, TrainingError
from attngan.losses import (
    Mismatched,
    cutout,
    discriminator_scale_loss,
    generator_scale_loss,
    generator_scale_terms,
    instance_noise,
    kl_loss,
    mode_seeking_loss,
    noise_level,
    paired_feature_loss,
    paired_l1_loss,
    random_shift,
    sentence_loss,
    sharded_word_loss,
    stage_consistency_loss,
    swapped_caption_loss,
    word_loss,
)
from attngan.models import sample_noise
from attngan.models.discriminator import FeatureDiscriminator
from attngan.models.layers import fold_batchnorm, use_fast_layers
from attngan.text import WordSwapper
from attngan.training import distributed
from attngan.training.loop import Loop, RunResult, list_checkpoints, resolve_device

log = logging.getLogger(__name__)

LIVE_GENERATOR = "generator_live.safetensors"
CRITIC_FILE = "feature_critic.safetensors"  # train.feature_critic's heads, in checkpoints
ENCODER_KEYS = ("word_dim", "embedding_dim", "image_encoder", "cnn_channels",
                "inception_align_corners")  # fmt: skip


def damsm_loss(
    regions: Tensor, image: Tensor, words: Tensor, sentence: Tensor, lengths: Tensor,
    class_ids: Tensor, gamma1: float, gamma2: float, gamma3: float,
) -> Tensor:  # fmt: skip
    """The DAMSM word + sentence loss of generated images (the generator's λ term)."""
    w = word_loss(regions, words, lengths, class_ids, gamma1, gamma2, gamma3)
    return w.total() + sentence_loss(image, sentence, class_ids, gamma3).total()


class DiscriminatorStep(nn.Module):
    """One discriminator's loss as a module, so that ``DistributedDataParallel`` (which hooks a
    module's forward) can wrap it."""

    def __init__(
        self, disc: nn.Module, r1_gamma: float = 0.0, mismatch: bool = True,
        magp_weight: float = 0.0, magp_power: float = 6.0, blur_negatives: float = 0.0,
        negatives_weight: float = 0.0, contrastive: float = 0.0, temperature: float = 0.1,
    ) -> None:  # fmt: skip
        super().__init__()
        self.disc, self.r1_gamma, self.mismatch = disc, r1_gamma, mismatch
        self.magp_weight, self.magp_power = magp_weight, magp_power
        self.blur_negatives, self.negatives_weight = blur_negatives, negatives_weight
        self.contrastive, self.temperature = contrastive, temperature

    def forward(
        self, real: Tensor, fake: Tensor, sentence: Tensor, mismatched: Mismatched | None,
        hard: Mismatched | None = None, negatives: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        return discriminator_scale_loss(
            self.disc, real, fake, sentence, mismatched, self.r1_gamma, self.mismatch,
            self.magp_weight, self.magp_power, hard, self.blur_negatives, negatives,
            self.negatives_weight, self.contrastive, self.temperature,
        )  # fmt: skip


def find_damsm(path: str | Path) -> Path:
    """A DAMSM model folder, or a ``train-damsm`` run folder (its ``model``, else its newest
    checkpoint)."""
    path = Path(path)
    if (path / MODEL_FILE).is_file() or not path.is_dir():
        return path
    if (path / "model" / MODEL_FILE).is_file():
        return path / "model"
    found = list_checkpoints(path)
    if found:
        return found[-1]
    raise ModelError(f"{path} is neither a model folder nor a run folder with a model")


def ema_decay(decay: float, step: int, warmup: bool = True) -> float:
    """The EMA decay after ``step`` finished steps: ``decay``, or with ``warmup`` at most
    ``(1 + step) / (10 + step)``, so early averages follow the generator closely."""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema ← decay·ema + (1 − decay)·model`` for parameters; buffers (BatchNorm statistics)
    are copied."""
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, list(model.parameters()), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


class GANTrainer(Loop):
    """``attngan train``: the attentional GAN on frozen DAMSM encoders. Writes sample grids with
    attention maps every ``train.sample_every`` steps and the EMA generator as ``RUN/model``."""

    name = "gan"

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        damsm: str | Path | None = None,
        device: str = "auto",
        on_step=None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(run_dir, on_step, progress)
        requested = resolve_device(device)
        self.world = distributed.setup(requested)
        self.device = distributed.device_for(requested, self.world)
        source = damsm or config.train.damsm_model
        if not source:
            raise TrainingError(
                "GAN training needs trained DAMSM encoders: pass --damsm RUN_OR_MODEL "
                "(from `attngan train-damsm`) or --set train.damsm_model=PATH"
            )
        encoders = load_model(
            find_damsm(source), components=("text_encoder", "image_encoder"), device=self.device
        )
        config = self._match_encoders(config, encoders.config)
        config.train.damsm_model = str(encoders.path)
        self.config = config
        t = config.train
        self.batch_size, self.epochs, self.max_steps = t.batch_size, t.epochs, t.max_steps
        if not config.model.conditional and (t.damsm_lambda > 0 or t.swap_weight > 0):
            raise TrainingError(
                "an unconditional GAN (model.conditional=false) has no caption to match: "
                "--set train.damsm_lambda=0 (and train.swap_weight=0)"
            )
        self.seed, self.checkpoint_every = t.seed, t.checkpoint_every
        self.keep, self.log_every, self.workers = (
            t.keep_checkpoints,
            t.log_every,
            config.data.workers,
        )
        torch.manual_seed(self.seed)  # the same initial networks on every rank
        self.vocab = encoders.vocab
        data = open_datasets(
            config, ("train", "test"), vocab=self.vocab, progress=progress is not False
        )
        self.dataset, self.test = data["train"], data["test"]
        self.swapper = None
        if t.swap_weight > 0 or t.d_swap_weight > 0:
            if not config.damsm.swap_words:
                which = "train.swap_weight" if t.swap_weight > 0 else "train.d_swap_weight"
                raise TrainingError(f"{which} needs the words to swap: --set damsm.swap_words=...")
            self.swapper = WordSwapper(config.damsm.swap_words, self.vocab)
        if t.d_negatives > 0 and not config.data.negatives:
            raise TrainingError(
                "train.d_negatives needs the folder of paired negatives: --set data.negatives=DIR"
            )
        self.text_encoder = encoders["text_encoder"].requires_grad_(False).eval()
        self.image_encoder = encoders["image_encoder"].requires_grad_(False).eval()
        self.generator = build_component("generator", config, len(self.vocab)).to(self.device)
        self.discriminators = build_component("discriminators", config, len(self.vocab))
        self.discriminators.to(self.device)
        # the DAMSM loss's image encoder: with train.fast_layers a copy with BatchNorm folded
        self.loss_encoder = self.image_encoder
        if t.fast_layers:
            use_fast_layers(self.generator)
            use_fast_layers(self.discriminators)
            self.loss_encoder = fold_batchnorm(self.image_encoder)
        self.ema = copy.deepcopy(self.generator).requires_grad_(False).eval()
        if t.sync_batchnorm:
            self.generator = distributed.convert_sync_batchnorm(self.generator, self.device)
            self.discriminators = distributed.convert_sync_batchnorm(
                self.discriminators, self.device, double_backward=t.r1_gamma > 0
            )
        if t.channels_last:
            for net in {self.generator, self.ema, self.discriminators, self.loss_encoder}:
                net.to(memory_format=torch.channels_last)
        # fused Adam: one kernel per parameter, no temporary copies of the parameter list
        adam = dict(betas=(t.beta1, t.beta2), fused=True)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=t.lr_g, **adam)
        self.opt_d = [
            torch.optim.Adam(d.parameters(), lr=t.lr_d, **adam) for d in self.discriminators
        ]
        # the steps' entry points: DDP-wrapped under torchrun, compiled with train.compile
        self.g_step = distributed.wrap(self.generator, self.device)
        self.d_steps = [
            distributed.wrap(
                DiscriminatorStep(
                    d,
                    t.r1_gamma,
                    config.model.conditional,
                    t.magp_weight,
                    t.magp_power,
                    t.d_blur_negatives,
                    t.d_negatives,
                    t.d_contrastive,
                    t.d_contrastive_temperature,
                ),
                self.device,
            )
            for d in self.discriminators
        ]
        # train.feature_critic: a critic reading the frozen image encoder's maps (last stage)
        self.critic, self.critic_step, self.opt_critic = None, None, None
        if t.feature_critic > 0:
            if config.model.image_encoder != "cnn":
                raise TrainingError(
                    "train.feature_critic reads the CNN image encoder's maps: it needs a DAMSM "
                    f"with model.image_encoder=cnn (this one: {config.model.image_encoder})"
                )
            self.critic = FeatureDiscriminator(
                self.image_encoder, config.model.embedding_dim, t.feature_critic_width
            ).to(self.device)
            self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=t.lr_d, **adam)
            self.critic_step = distributed.wrap(
                DiscriminatorStep(self.critic, t.r1_gamma, config.model.conditional),
                self.device,
            )
        self.damsm_loss = damsm_loss
        if t.compile:
            self.g_step = torch.compile(self.g_step, mode=t.compile_mode)
            if t.r1_gamma == 0 and t.magp_weight == 0:  # no double backward under compile
                self.d_steps = [torch.compile(d, mode=t.compile_mode) for d in self.d_steps]
            else:
                log.warning("train.compile: the discriminator steps run eagerly with R1 / MA-GP")
            self.damsm_loss = torch.compile(damsm_loss, dynamic=True)  # captions vary in length
        torch.manual_seed(self.seed + self.world.rank)  # rank-offset streams from here on
        self._fixed = self._sample_inputs()

    @staticmethod
    def _match_encoders(config: Config, damsm: Config) -> Config:
        """The text and image encoders' settings come from the DAMSM model."""
        model = dataclasses.replace(
            config.model, **{k: getattr(damsm.model, k) for k in ENCODER_KEYS}
        )
        trained, last = damsm.model.cnn_input_size, model.image_sizes[-1]
        if model.image_encoder == "cnn" and last != trained:
            if last < trained:  # sides are powers of two: a larger last stage averages down
                raise TrainingError(
                    f"the DAMSM's CNN image encoder was trained on {trained} px images, but this "
                    f"generator's last stage makes {last} px: train DAMSM with the same "
                    "model.base_size and model.stages (or a smaller size)"
                )
            log.info("the DAMSM loss scores the last stage's %d px images averaged down to the "
                     "CNN image encoder's %d px", last, trained)  # fmt: skip
            model = dataclasses.replace(model, cnn_size=trained)  # saved models rebuild it so
        return dataclasses.replace(config, model=model)

    # --- one step

    def _text(self, tokens: Tensor, lengths: Tensor):
        with torch.no_grad():
            return self.text_encoder(tokens, lengths)

    def noise(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """This step's z and conditioning noise for this rank's rows: drawn for the global batch
        from ``(seed, step)`` alone, so a resumed run and any number of ranks draw the same."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step + 7)
        rows = batch_size * self.world.size
        z = torch.randn(rows, self.config.model.z_dim, generator=gen)
        ca = torch.randn(rows, self.config.model.condition_dim, generator=gen)
        mine = slice(self.world.rank * batch_size, (self.world.rank + 1) * batch_size)
        return z[mine].to(self.device), ca[mine].to(self.device)

    def _mismatched(self, sentences: Tensor, batch_size: int) -> Mismatched | None:
        """Real image k of the global batch with sentence k+1: this rank's share of the pairs."""
        total = sentences.size(0)
        if total < 2:
            return None
        first = self.world.rank * batch_size
        rows = torch.arange(min(batch_size, total - 1 - first), device=self.device)
        share = rows.numel() * self.world.size / (total - 1)
        return Mismatched(rows, sentences[first + 1 : first + 1 + rows.numel()], share)

    def train_step(self, batch: Any) -> dict[str, float]:
        t, d = self.config.train, self.config.damsm
        if t.compile and t.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are done
        cl = torch.channels_last if t.channels_last else torch.contiguous_format
        real = [im.to(self.device, non_blocking=True, memory_format=cl) for im in batch.images]
        paired = []
        if self.step >= t.d_negatives_from:  # batches carry none unless train.d_negatives > 0
            paired = [im.to(self.device, non_blocking=True, memory_format=cl)
                      for im in batch.negatives]  # fmt: skip
        b = real[0].size(0)
        lengths = batch.length.to(self.device)
        tokens = batch.tokens.to(self.device, non_blocking=True)
        text = self._text(tokens, lengths)
        if not self.config.model.conditional:  # the discriminators see no text either
            text = text._replace(sentence=torch.zeros_like(text.sentence))
        z, ca = self.noise(b)
        amp = torch.autocast(self.device.type, torch.bfloat16, enabled=t.precision == "bf16")
        with amp:
            if t.mode_seeking > 0:
                out, seeking = self._mode_seeking(z, ca, text, b)
            else:
                out = self.g_step(z, text.sentence, text.words, text.mask, ca_noise=ca)
        # the global batch's text (the frozen encoder's, so no gradient), words padded to the
        # longest possible caption so every rank's block has the same shape
        words = text.words
        if self.world.size > 1:
            words = torch.nn.functional.pad(words, (0, tokens.size(1) - words.size(2)))
        all_words = distributed.gather(words)
        all_sentences = distributed.gather(text.sentence)
        all_lengths = distributed.gather(lengths)
        all_classes = distributed.gather(batch.class_id.to(self.device))
        mismatched = self._mismatched(all_sentences, b)
        swap = self._swapped(batch, lengths) if self.swapper is not None else None
        hard = None
        if swap is not None and t.d_swap_weight > 0:  # the discriminators' hard negatives
            rows = swap[1].nonzero().flatten().to(self.device)
            hard = Mismatched(rows, swap[0].sentence[rows], t.d_swap_weight)
        losses: dict[str, float] = {}
        # discriminators: real, fake (detached inside the loss), mismatched
        d_total = 0.0
        augment = self._augment()
        for i, (step, opt) in enumerate(zip(self.d_steps, self.opt_d, strict=True)):
            disc = self.discriminators[i]
            disc.requires_grad_(True)
            with amp:
                loss = step(augment(real[i]), augment(out.images[i]), text.sentence, mismatched,
                            hard, augment(paired[i]) if paired else None)  # fmt: skip
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)  # freed now: not held through the generator's step
            d_total += loss.item()
            disc.requires_grad_(False)  # no D gradients from the generator's loss
        if self.critic is not None:  # the feature critic on the last stage
            self.critic.requires_grad_(True)
            with amp:
                loss = self.critic_step(augment(real[-1]), augment(out.images[-1]),
                                        text.sentence, mismatched, hard)  # fmt: skip
            loss.backward()
            self.opt_critic.step()
            self.opt_critic.zero_grad(set_to_none=True)
            losses["d_critic"] = loss.item()
            self.critic.requires_grad_(False)
        losses["d"] = d_total
        # generator: adversarial at every scale + λ·DAMSM of the last stage + KL
        with amp:
            # with train.d_contrastive, the same features also give its term
            temperature = t.d_contrastive_temperature if t.d_contrastive > 0 else None
            terms = [
                generator_scale_terms(disc, augment(fake), text.sentence, temperature)
                for disc, fake in zip(self.discriminators, out.images, strict=True)
            ]
            adv = sum(a for a, _ in terms)
            contrast = None if temperature is None else sum(c for _, c in terms)
            last = out.images[-1]
            critic_term = None
            if self.critic is not None:
                critic_term = generator_scale_loss(self.critic, augment(last), text.sentence)
            if t.damsm_shift > 0:
                last = random_shift(last, t.damsm_shift, self._step_generator(3))
            features = self.loss_encoder(last)
        # DAMSM over the global batch (every caption against every image), in float32
        regions, image = features.regions.float(), features.image.float()
        if self.world.size == 1:
            damsm = self.damsm_loss(regions, image, text.words, text.sentence, lengths,
                                    all_classes, d.gamma1, d.gamma2, d.gamma3)  # fmt: skip
        else:  # this rank's rows and columns of the global score matrix
            first = self.world.rank * b
            w = sharded_word_loss(
                regions, distributed.gather(regions), words, all_words, lengths, all_lengths,
                first, all_classes, d.gamma1, d.gamma2, d.gamma3,
            )  # fmt: skip
            s = sentence_loss(distributed.gather(image), all_sentences, all_classes, d.gamma3)
            damsm = w.total() + s.total()
        kl = kl_loss(out.mu.float(), out.logvar.float())
        g_loss = t.g_adversarial * adv.float() + t.damsm_lambda * damsm + t.kl_weight * kl
        if swap is not None and t.swap_weight > 0:  # this rank's images, swapped captions
            swapped, valid = swap
            term = swapped_caption_loss(
                regions, image, text.words, text.sentence, swapped.words, swapped.sentence,
                lengths, valid, d.gamma1, d.gamma2, d.gamma3,
            )  # fmt: skip
            g_loss = g_loss + t.swap_weight * term
            losses["swap"] = term.item()
        if t.stage_consistency > 0:
            agree = stage_consistency_loss([im.float() for im in out.images])
            g_loss = g_loss + t.stage_consistency * agree
            losses["stages"] = agree.item()
        if t.paired_l1 > 0:  # each caption's own real image, at every stage's size
            paired_term = paired_l1_loss(
                [im.float() for im in out.images], [im.float() for im in real]
            )
            g_loss = g_loss + t.paired_l1 * paired_term
            losses["paired_l1"] = paired_term.item()
        if t.paired_features > 0:  # the frozen DAMSM image encoder's view of the caption's image
            with torch.no_grad(), amp:
                target = self.loss_encoder(real[-1]).regions.float()
            paired_term = paired_feature_loss(regions, target)
            g_loss = g_loss + t.paired_features * paired_term
            losses["paired_features"] = paired_term.item()
        if contrast is not None:  # each image picked by its caption, through D's features
            g_loss = g_loss + t.d_contrastive * contrast.float()
            losses["g_contrast"] = contrast.item()
        if critic_term is not None:
            g_loss = g_loss + t.feature_critic * critic_term.float()
            losses["g_critic"] = critic_term.item()
        if t.mode_seeking > 0:
            g_loss = g_loss + t.mode_seeking * seeking
            losses["mode_seeking"] = seeking.item()
        g_loss.backward()
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        ema_update(self.ema, self.generator, ema_decay(t.ema_decay, self.step, t.ema_warmup))
        losses.update(g=g_loss.item(), g_adv=adv.item(), damsm=damsm.item(), kl=kl.item())
        return losses

    def _swapped(self, batch: Any, lengths: Tensor):
        """This rank's captions with a word swapped (``damsm.swap_words``): their text features
        and which rows had a word to swap."""
        rng = random.Random(hash((self.seed, self.step, self.world.rank)))
        rows, valid = self.swapper(batch.tokens.tolist(), batch.length.tolist(), rng)
        return self._text(torch.tensor(rows, device=self.device), lengths), torch.tensor(valid)

    def _step_generator(self, stream: int) -> torch.Generator:
        """A CPU generator seeded by (seed, step, rank, stream): the same draws after a resume."""
        key = ((self.seed * 1_000_003 + self.step) * 8191 + self.world.rank) * 131 + stream
        return torch.Generator().manual_seed(key % (2**63))

    def _augment(self):
        """The discriminators' input augmentation of this step: cutout, then instance noise
        (identity when both are off)."""
        t = self.config.train
        fraction, sigma = t.d_cutout, noise_level(t.d_noise, t.d_noise_until, self.step)
        if fraction <= 0 and sigma <= 0:
            return lambda images: images
        gen = self._step_generator(1)

        def augment(images: Tensor) -> Tensor:
            if fraction > 0:
                images = cutout(images, fraction, gen)
            return instance_noise(images, sigma, gen) if sigma > 0 else images

        return augment

    def _mode_seeking(self, z: Tensor, ca: Tensor, text, b: int):
        """One generator pass over the batch plus its first half's captions a second time with
        other z (the same conditioning noise): the batch's output, and the mode-seeking term."""
        k = max(1, b // 2)
        z2 = torch.randn(k, z.size(1), generator=self._step_generator(2)).to(z.device)
        twice = lambda x: torch.cat([x, x[:k]])  # noqa: E731
        both = self.g_step(torch.cat([z, z2]), twice(text.sentence), twice(text.words),
                           twice(text.mask), ca_noise=twice(ca))  # fmt: skip
        images = [im[:b] for im in both.images]
        out = both._replace(images=images, attention=[a[:b] for a in both.attention],
                            mu=both.mu[:b], logvar=both.logvar[:b])  # fmt: skip
        last = both.images[-1].float()
        return out, mode_seeking_loss(last[:k], last[b:], z[:k], z2)

    # --- samples

    def _sample_inputs(self) -> dict[str, Any]:
        count = min(self.config.train.sample_captions, len(self.test))
        items = [self.test[i * len(self.test) // count] for i in range(count)]
        tokens = torch.stack([s.tokens for s in items])
        lengths = torch.tensor([s.length for s in items])
        noise = sample_noise(count, self.config.model.z_dim, self.config.model.condition_dim,
                             seed=self.seed + 1)  # fmt: skip
        captions = [self.vocab.decode(s.tokens) for s in items]
        return {"tokens": tokens, "lengths": lengths, "noise": noise, "captions": captions,
                "reals": [s.images[-1] for s in items]}  # fmt: skip

    @torch.no_grad()
    def samples(self):
        """The EMA generator's images and attention for the run's fixed captions and noise."""
        f = self._fixed
        lengths = f["lengths"].to(self.device)
        text = self.text_encoder(f["tokens"].to(self.device), lengths)
        noise = f["noise"]
        return self.ema(
            noise.z.to(self.device), text.sentence, text.words, text.mask,
            ca_noise=noise.ca.to(self.device),
        )  # fmt: skip

    def write_samples(self) -> Path:
        from attngan.visualize import attention_figure, captioned_grid, to_pil

        folder = self.run_dir / "samples"
        folder.mkdir(exist_ok=True)
        if not (folder / "reals.png").exists():
            captioned_grid(
                [to_pil(im) for im in self._fixed["reals"]], self._fixed["captions"]
            ).save(folder / "reals.png")
        out = self.samples()
        captions = self._fixed["captions"]
        grid = captioned_grid([to_pil(im) for im in out.images[-1].cpu()], captions)
        path = folder / f"step-{self.step:08d}.png"
        grid.save(path)
        if self.stats is not None:
            self.stats.image("samples", grid, self.step)
        if out.attention:  # a one-stage generator has no refinement stage, so no attention
            figure = attention_figure(
                [im[0].cpu() for im in out.images],
                captions[0].split(),
                [a[0].cpu() for a in out.attention],
            )
            figure.save(folder / f"step-{self.step:08d}-attention.png")
            if self.stats is not None:
                self.stats.image("attention", figure, self.step)
        return path

    def periodic(self, step: int) -> None:
        if step % self.config.train.sample_every == 0 and self.world.main:
            self.write_samples()

    # --- checkpoints

    def state(self) -> dict[str, Any]:
        state = {
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": [o.state_dict() for o in self.opt_d],
        }
        if self.opt_critic is not None:
            state["optimizer_critic"] = self.opt_critic.state_dict()
        return state

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        load_weights(self.generator, folder / LIVE_GENERATOR)
        load_weights(self.ema, folder / "generator.safetensors")
        try:
            load_weights(self.discriminators, folder / "discriminators.safetensors")
        except ModelError as err:
            if ".contrast." not in str(err):
                raise
            saved = "without" if self.config.train.d_contrastive > 0 else "with"
            raise TrainingError(
                f"{folder} was saved {saved} train.d_contrastive (the discriminators' contrastive "
                "heads): resume it with the setting it was saved with, or start a new run"
            ) from None
        self.opt_g.load_state_dict(state["optimizer_g"])
        for opt, s in zip(self.opt_d, state["optimizer_d"], strict=True):
            opt.load_state_dict(s)
        if self.critic is not None:
            if "optimizer_critic" not in state:
                raise TrainingError(
                    f"{folder} was saved without train.feature_critic: resume it with "
                    "--set train.feature_critic=0, or start a new run"
                )
            load_weights(self.critic, folder / CRITIC_FILE)
            self.opt_critic.load_state_dict(state["optimizer_critic"])

    def write_model(self, folder: Path, final: bool) -> None:
        modules = {"generator": self.ema, "text_encoder": self.text_encoder,
                   "image_encoder": self.image_encoder}  # fmt: skip
        if not final:
            modules["discriminators"] = self.discriminators
            save_weights(self.generator, folder / LIVE_GENERATOR, "generator")
            if self.critic is not None:
                save_weights(self.critic, folder / CRITIC_FILE, "feature_critic")
        info = {"step": self.step, "trained_by": "attngan train",
                "damsm_model": self.config.train.damsm_model}  # fmt: skip
        save_model(folder, "attngan", self.config, self.vocab, modules, info)

    def before_final_checkpoint(self) -> None:
        if self.step % self.config.train.sample_every and self.world.main:
            self.write_samples()

    def finish(self) -> RunResult:
        model = self.run_dir / "model"
        if self.world.main:
            self.write_model(model, final=True)
            log.info("generator model (EMA) written to %s", model)
        distributed.barrier()
        return RunResult(self.run_dir, self.step, "finished", self.last_checkpoint, model)
