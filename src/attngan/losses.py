"""Loss terms as small pure functions (SPEC §4-§7); equation numbers are the paper's.

Shapes: B batch, D joint width, T words (the batch's longest caption), N = h*w image regions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from attngan.models.discriminator import Discriminator
from attngan.models.layers import check_shape

EPS = 1e-8  # the release's cosine-similarity floor


class MatchingLoss(NamedTuple):
    """A DAMSM term in both directions: captions given an image, and images given a caption."""

    image_to_text: Tensor  # CE over captions for each image (the release's loss0)
    text_to_image: Tensor  # CE over images for each caption (loss1)

    def total(self) -> Tensor:
        return self.image_to_text + self.text_to_image


class WordMatch(NamedTuple):
    scores: Tensor  # [B_img, B_cap] R(Q_j, D_i) of Eq. 10, before gamma3
    attention: Tensor | None  # [B, T, h, w] each caption's attention over its own image's regions
    # (Eq. 9); None when images and captions are different batches


def class_mask(class_ids: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
    """``[B, B]`` True where two different samples share a class: not used as negatives."""
    if class_ids is None:
        return None
    check_shape("class_ids", class_ids, batch)
    class_ids = class_ids.to(device)
    same = class_ids[:, None] == class_ids[None, :]
    return same & ~torch.eye(batch, dtype=torch.bool, device=device)


def matching_loss(scores: Tensor, class_ids: Tensor | None = None) -> MatchingLoss:
    """Cross-entropy both ways on ``scores [B_img, B_cap]``, labels on the diagonal (Eq. 11-13)."""
    batch = scores.size(0)
    check_shape("scores", scores, batch, batch)
    mask = class_mask(class_ids, batch, scores.device)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    labels = torch.arange(batch, device=scores.device)
    return MatchingLoss(F.cross_entropy(scores, labels), F.cross_entropy(scores.t(), labels))


def word_match(
    regions: Tensor, words: Tensor, lengths: Tensor, gamma1: float = 4.0, gamma2: float = 5.0
) -> WordMatch:
    """Word-level matching score of every (image j, caption i) pair in one batched pass.

    ``regions [B_img, D, h, w]``, ``words [B_cap, D, T]``, ``lengths [B_cap]``; usually one batch
    of pairs (B_img = B_cap = B), but any two sets may be matched.
    """
    images, dim, height, width = regions.shape
    batch = words.size(0)  # captions
    check_shape("words", words, None, dim, None)
    check_shape("lengths", lengths, batch)
    steps = words.size(2)
    lengths = lengths.to(words.device)  # a data loader's lengths stay on the CPU
    # Image-major layout [B_img, N, B_cap, T]: the word-region scores come from one matrix
    # product, both softmaxes and the context product then read them in place (no copies)
    v = regions.flatten(2)  # [B_img, D, N]
    pad = torch.arange(steps, device=words.device)[None, :] >= lengths[:, None]  # [B_cap, T]
    e = words.permute(1, 0, 2).reshape(dim, batch * steps)  # [D, B_cap*T]
    s = (v.transpose(1, 2).reshape(images * v.size(2), dim) @ e).view(images, -1, batch, steps)
    s = s.masked_fill(pad, float("-inf")).softmax(dim=3)  # Eq. 8: s = e^T v, over words
    alpha = (gamma1 * s).softmax(dim=1)  # Eq. 9, over regions: [B_img, N, B_cap, T]
    context = torch.bmm(v, alpha.flatten(2)).view(images, dim, batch, steps)  # c = v alpha^T
    e = e.view(1, dim, batch, steps)
    cos = (context * e).sum(1) / (context.norm(dim=1) * e.norm(dim=1)).clamp(min=EPS)
    cos = (gamma2 * cos).masked_fill(pad, float("-inf"))  # [B_img, B_cap, T]
    scores = torch.logsumexp(cos, dim=2)  # Eq. 10: log sum_k exp(gamma2 R(c_k, e_k))
    if images != batch:
        return WordMatch(scores, None)
    own = alpha.diagonal(dim1=0, dim2=2).permute(2, 1, 0)  # [B, T, N] caption i on image i
    own = own.masked_fill(pad[:, :, None], 0.0)
    return WordMatch(scores, own.reshape(batch, steps, height, width))


def word_loss(
    regions: Tensor,
    words: Tensor,
    lengths: Tensor,
    class_ids: Tensor | None = None,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
) -> MatchingLoss:
    """DAMSM word loss (Eq. 11-13 on the word-level score of Eq. 10)."""
    match = word_match(regions, words, lengths, gamma1, gamma2)
    return matching_loss(gamma3 * match.scores, class_ids)


def sharded_word_loss(
    regions: Tensor,
    all_regions: Tensor,
    words: Tensor,
    all_words: Tensor,
    lengths: Tensor,
    all_lengths: Tensor,
    first: int,
    all_class_ids: Tensor | None = None,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
) -> MatchingLoss:
    """One data-parallel rank's share of the DAMSM word loss of a global batch: its ``b`` images
    against all ``B`` captions (``image_to_text``) and all images against its captions
    (``text_to_image``), its samples being ``first .. first+b-1`` of the global batch. Each term is
    the mean over this rank's samples, so the mean over ranks is :func:`word_loss` of the global
    batch, at 2bB rather than B² pairs per rank."""
    b, total = regions.size(0), all_regions.size(0)
    rows = gamma3 * word_match(regions, all_words, all_lengths, gamma1, gamma2).scores  # [b, B]
    cols = gamma3 * word_match(all_regions, words, lengths, gamma1, gamma2).scores.t()  # [b, B]
    labels = torch.arange(first, first + b, device=rows.device)
    if all_class_ids is not None:
        mask = class_mask(all_class_ids, total, rows.device)[first : first + b]  # [b, B]
        rows, cols = rows.masked_fill(mask, float("-inf")), cols.masked_fill(mask, float("-inf"))
    return MatchingLoss(F.cross_entropy(rows, labels), F.cross_entropy(cols, labels))


def sentence_loss(
    image: Tensor, sentence: Tensor, class_ids: Tensor | None = None, gamma3: float = 10.0
) -> MatchingLoss:
    """DAMSM sentence loss: the same posterior on ``cos(global image j, sentence i)``."""
    check_shape("sentence", sentence, *image.shape)
    return matching_loss(gamma3 * cosine_scores(image, sentence), class_ids)


def cosine_scores(image: Tensor, sentence: Tensor) -> Tensor:
    """``cos(global image j, sentence i)`` of every pair: ``[B_img, D] x [B_cap, D] -> [B_img,
    B_cap]`` (the release's floor on the norms' product)."""
    dots = image @ sentence.t()
    norms = image.norm(dim=1)[:, None] * sentence.norm(dim=1)[None, :]
    return dots / norms.clamp(min=EPS)


def hard_negative_loss(
    scores: Tensor,
    negative: Tensor,
    valid: Tensor | None = None,
    class_ids: Tensor | None = None,
) -> Tensor:
    """Cross-entropy over captions for each image with one extra, hard negative caption: image
    ``j`` must pick its own caption among the batch's ``scores[j]`` and ``negative[j]``, the score
    of its caption with a word swapped (``text.WordSwapper``). ``scores [B, B]`` and
    ``negative [B]`` are already scaled (gamma3); rows where ``valid`` is False (no swap) are
    left out, and same-class captions are not negatives (as in :func:`matching_loss`). Zero when
    no row is valid."""
    batch = scores.size(0)
    check_shape("scores", scores, batch, batch)
    check_shape("negative", negative, batch)
    mask = class_mask(class_ids, batch, scores.device)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    logits = torch.cat([scores, negative[:, None]], dim=1)  # [B, B+1]
    labels = torch.arange(batch, device=scores.device)
    if valid is None:
        return F.cross_entropy(logits, labels)
    valid = valid.to(scores.device)
    if not bool(valid.any()):
        return scores.new_zeros(())
    return F.cross_entropy(logits[valid], labels[valid])


def swapped_caption_loss(
    regions: Tensor, image: Tensor, words: Tensor, sentence: Tensor, swapped_words: Tensor,
    swapped_sentence: Tensor, lengths: Tensor, valid: Tensor, gamma1: float = 4.0,
    gamma2: float = 5.0, gamma3: float = 10.0,
) -> Tensor:  # fmt: skip
    """For each image, its caption against the same caption with one word swapped
    (``text.WordSwapper``): ``softplus(gamma3 (R(swapped) - R(true)))`` of the word-level score
    (Eq. 10) plus the same of the sentence cosine, averaged over the rows where ``valid``. The
    generator's hard-negative term: it must draw what its caption names, not the swapped word."""
    pos = word_match(regions, words, lengths, gamma1, gamma2).scores.diagonal()
    neg = word_match(regions, swapped_words, lengths, gamma1, gamma2).scores.diagonal()
    pos_s = cosine_scores(image, sentence).diagonal()
    neg_s = cosine_scores(image, swapped_sentence).diagonal()
    terms = F.softplus(gamma3 * (neg - pos)) + F.softplus(gamma3 * (neg_s - pos_s))
    valid = valid.to(terms.device)
    if not bool(valid.any()):
        return terms.new_zeros(())
    return terms[valid].mean()


def kl_loss(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) averaged over elements, as the release: -0.5 mean(1 + log
    sigma^2 - mu^2 - sigma^2)."""
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(
    real_uncond: Tensor | None,
    real_cond: Tensor,
    fake_uncond: Tensor | None,
    fake_cond: Tensor,
    mismatched_cond: Tensor | None,
    mismatched_weight: float = 1.0,
) -> Tensor:
    """``(real_uncond + real_cond)/2 + (fake_uncond + fake_cond + mismatched_cond)/3`` of BCE terms
    (SPEC §6). Each side averages the terms it has: without the unconditional head (None) it is
    the release's ``real_cond + (fake_cond + mismatched_cond)/2``; without mismatched pairs (None:
    a batch of one, where the release gives NaN) the fake side averages the other terms.
    ``mismatched_weight`` scales the mismatched term, whose pairs may be a share of a larger
    (data-parallel) batch's; an empty ``mismatched_cond`` is a share of zero."""
    reals = [_bce(real_cond, 1.0)]
    fakes = [_bce(fake_cond, 0.0)]
    if real_uncond is not None and fake_uncond is not None:
        reals.append(_bce(real_uncond, 1.0))
        fakes.append(_bce(fake_uncond, 0.0))
    if mismatched_cond is not None:
        if mismatched_cond.numel():
            fakes.append(mismatched_weight * _bce(mismatched_cond, 0.0))
        else:
            fakes.append(fake_cond.new_zeros(()))
    return sum(reals) / len(reals) + sum(fakes) / len(fakes)


def generator_adversarial_loss(fake_uncond: Tensor | None, fake_cond: Tensor) -> Tensor:
    """The generator's term at one scale: both heads (or the conditional one alone, when there is
    no unconditional head) should call the fakes real."""
    loss = _bce(fake_cond, 1.0)
    return loss if fake_uncond is None else loss + _bce(fake_uncond, 1.0)


class Mismatched(NamedTuple):
    """Which real images meet which wrong sentence: ``rows`` of the batch, ``sentence [len(rows),
    D]``, and the ``weight`` of their mean (their share of all pairs, times the world size, when
    a data-parallel rank holds part of the global batch)."""

    rows: Tensor
    sentence: Tensor
    weight: float = 1.0


def discriminator_scale_loss(
    disc: Discriminator,
    real: Tensor,
    fake: Tensor,
    sentence: Tensor,
    mismatched: Mismatched | None = None,
    r1_gamma: float = 0.0,
    mismatch: bool = True,
    magp_weight: float = 0.0,
    magp_power: float = 6.0,
    hard: Mismatched | None = None,
    blur_negatives: float = 0.0,
    negatives: Tensor | None = None,
    negatives_weight: float = 0.0,
    contrastive: float = 0.0,
    temperature: float = 0.1,
) -> Tensor:
    """One discriminator's loss on real images, detached fakes and mismatched pairs (real image k
    with sentence k+1; ``mismatched`` gives other pairs; ``mismatch=False`` leaves the term out,
    as an unconditional GAN must). ``r1_gamma`` > 0 adds the R1 penalty (not in the release):
    ``r1_gamma / 2`` times :func:`r1_penalty` of the real logits; ``magp_weight`` > 0 adds
    :func:`matching_aware_penalty` (DF-GAN's MA-GP, not in the release either). ``hard`` adds
    ``hard.weight`` times the BCE of real images ``hard.rows`` with ``hard.sentence`` (their own
    captions with a word swapped) as mismatched pairs: hard negatives that differ from the true
    caption in that word alone, so the conditional head must check it. ``blur_negatives`` > 0
    adds that weight times the fake loss of the real images blurred (:func:`blur_images`);
    ``negatives`` (each real image's paired negative, ``data.negatives``) with
    ``negatives_weight`` > 0 adds that weight times their fake loss with the real captions.
    ``contrastive`` > 0 adds that weight times the real images' :func:`contrastive_loss` through
    the discriminator's contrastive head (``train.d_contrastive``)."""
    if r1_gamma > 0 or magp_weight > 0:
        real = real.detach().requires_grad_(True)
    if magp_weight > 0:
        sentence = sentence.detach().requires_grad_(True)
    real_h, fake_h = disc.features(real), disc.features(fake.detach())
    if not mismatch:
        mismatched = None
    elif mismatched is None and real.size(0) > 1:
        rows = torch.arange(real.size(0) - 1, device=real.device)
        mismatched = Mismatched(rows, sentence[1:])
    wrong = disc.conditional(real_h[mismatched.rows], mismatched.sentence) if mismatched else None
    uncond = disc.unconditional(real_h) if disc.uncond_logits is not None else None
    real_cond = disc.conditional(real_h, sentence)
    loss = discriminator_loss(
        uncond,
        real_cond,
        disc.unconditional(fake_h) if uncond is not None else None,
        disc.conditional(fake_h, sentence),
        wrong,
        mismatched.weight if mismatched else 1.0,
    )
    if r1_gamma > 0:
        logits = real_cond if uncond is None else real_cond + uncond
        loss = loss + 0.5 * r1_gamma * r1_penalty(logits, real)
    if magp_weight > 0:
        loss = loss + magp_weight * matching_aware_penalty(real_cond, real, sentence, magp_power)
    if hard is not None and hard.rows.numel():
        loss = loss + hard.weight * _bce(disc.conditional(real_h[hard.rows], hard.sentence), 0.0)
    if blur_negatives > 0:
        loss = loss + blur_negatives * _negative_loss(disc, blur_images(real.detach()), sentence)
    if negatives is not None and negatives_weight > 0:
        loss = loss + negatives_weight * _negative_loss(disc, negatives.detach(), sentence)
    if contrastive > 0:
        loss = loss + contrastive * contrastive_loss(disc.embed(real_h), sentence, temperature)
    return loss


def _negative_loss(disc: Discriminator, images: Tensor, sentence: Tensor) -> Tensor:
    """The fake loss of extra negative ``images`` with ``sentence``: the mean of the
    conditional head's BCE and, if there is one, the unconditional head's."""
    out = disc(images, sentence)
    terms = [_bce(out.conditional, 0.0)]
    if out.unconditional is not None:
        terms.append(_bce(out.unconditional, 0.0))
    return sum(terms) / len(terms)


def blur_images(images: Tensor, sigma: float = 1 / 48) -> Tensor:
    """A Gaussian blur of ``sigma`` times the side (1.3 px at 64 px): what stays is colour,
    place and rough size; corners, points and thin arms go."""
    s = sigma * images.size(-1)
    k = 2 * math.ceil(3 * s) + 1
    return TF.gaussian_blur(images, [k, k], [s, s])


def matching_aware_penalty(
    real_cond: Tensor, real: Tensor, sentence: Tensor, power: float = 6.0
) -> Tensor:
    """MA-GP (Tao et al., DF-GAN, 2022): the batch mean of ``||(grad_x, grad_s)||^power`` of the
    conditional logits of real images with their own sentences, with respect to both the images
    and the sentences, kept in the graph. It smooths the discriminator around the matching
    (image, text) pairs, so the generator's gradient leads towards them. ``real`` and ``sentence``
    must require grad."""
    gx, gs = torch.autograd.grad(real_cond.sum(), (real, sentence), create_graph=True)
    norm = torch.cat([gx.float().flatten(1), gs.float().flatten(1)], dim=1).norm(dim=1)
    return norm.pow(power).mean()


def mode_seeking_loss(images_a: Tensor, images_b: Tensor, z_a: Tensor, z_b: Tensor) -> Tensor:
    """MSGAN (Mao et al., 2019, Eq. 3): ``1 / (d_I / d_z + eps)`` with ``d_I`` the mean absolute
    difference of two images of the same caption and ``d_z`` that of their noise vectors; the
    generator minimises it, so different noise must give different images."""
    ratio = (images_a - images_b).abs().mean() / (z_a - z_b).abs().mean()
    return 1.0 / (ratio + 1e-5)


def paired_l1_loss(fakes: list[Tensor], reals: list[Tensor]) -> Tensor:
    """pix2pix's reconstruction term (Isola et al., 2017), summed over the stages: the mean
    absolute difference between each stage's image and the real image of the same caption at that
    size. ``fakes`` and ``reals``: one ``[B, 3, s, s]`` per stage, in the same order."""
    if len(fakes) != len(reals):
        raise ValueError(f"paired_l1_loss: {len(fakes)} generated stages, {len(reals)} real")
    return torch.stack([(f - r).abs().mean() for f, r in zip(fakes, reals, strict=True)]).sum()


def paired_feature_loss(fake_regions: Tensor, real_regions: Tensor) -> Tensor:
    """A perceptual term: ``1 - cos`` between the sub-region features ``[B, D, h, w]`` of
    generated images and of their captions' real images, per region, averaged over all regions
    (0: the same features up to scale at every region; 2: opposite)."""
    if fake_regions.shape != real_regions.shape:
        raise ValueError(f"paired_feature_loss: shapes {tuple(fake_regions.shape)} and "
                         f"{tuple(real_regions.shape)} differ")  # fmt: skip
    return (1 - F.cosine_similarity(fake_regions, real_regions, dim=1, eps=1e-8)).mean()


def stage_consistency_loss(images: list[Tensor]) -> Tensor:
    """The mean absolute difference between the last stage's image, downsampled (bilinear,
    antialiased) to each earlier stage's size, and that stage's image, averaged over the earlier
    stages: 0 when the stages draw one picture at several sizes, as a real image pyramid does.
    ``images``: one ``[B, 3, s, s]`` per stage, smallest first."""
    last = images[-1]
    terms = [
        (F.interpolate(last, size=im.shape[-2:], mode="bilinear", antialias=True) - im).abs().mean()
        for im in images[:-1]
    ]
    return torch.stack(terms).mean() if terms else last.new_zeros(())


def cutout(images: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """DiffAugment's cutout (Zhao et al., 2020): each image ``[B, C, s, s]`` with one square of
    side ``round(fraction * s)`` set to 0 (mid-grey) at a random place (the square may run off
    the edge). Differentiable in ``images``; no colour, flip or position change, so a caption
    still describes what is left of the image."""
    b, _, h, w = images.shape
    side = max(1, round(fraction * h))
    top = torch.randint(0, h, (b, 1, 1), generator=generator) - side // 2  # centre at 0..s-1
    left = torch.randint(0, w, (b, 1, 1), generator=generator) - side // 2
    ys, xs = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    inside = (ys >= top) & (ys < top + side) & (xs >= left) & (xs < left + side)  # [B, h, w]
    return images * (~inside).to(images.dtype).to(images.device)[:, None]


def random_shift(images: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Each image ``[B, C, s, s]`` moved by its own random ``(dx, dy)``, each a whole number of
    pixels in ``[-shift, shift]``, the border reflected in; same size, differentiable in
    ``images``. A critic that reads the moved copy cannot be satisfied by a pattern tied to exact
    pixel positions (the augmentations of CLIP-guided generation, DiffAugment's translation)."""
    if shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (shift, shift, shift, shift), mode="reflect")
    offsets = torch.randint(0, 2 * shift + 1, (b, 2), generator=generator).tolist()
    return torch.stack([padded[k, :, dy : dy + h, dx : dx + w]
                        for k, (dy, dx) in enumerate(offsets)])  # fmt: skip


def instance_noise(images: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """``images`` plus Gaussian noise of standard deviation ``sigma`` (drawn on the CPU from
    ``generator``, so the same on every device), in the images' dtype and device."""
    noise = torch.randn(images.shape, generator=generator)
    return images + sigma * noise.to(device=images.device, dtype=images.dtype)


def noise_level(sigma: float, until: int, step: int) -> float:
    """Instance noise at ``step``: ``sigma``, falling linearly to 0 at step ``until`` (0:
    constant)."""
    if until <= 0:
        return sigma
    return sigma * max(0.0, 1.0 - step / until)


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """R1 (Mescheder et al., 2018): the batch mean of the squared gradient norm of the real images'
    logits (summed over heads) with respect to the images, kept in the graph so that the
    discriminator's backward pass includes it. ``real`` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def generator_scale_loss(disc: Discriminator, fake: Tensor, sentence: Tensor) -> Tensor:
    """The generator's adversarial loss against one discriminator (gradients flow into ``fake``)."""
    return generator_scale_terms(disc, fake, sentence)[0]


def generator_scale_terms(
    disc: Discriminator, fake: Tensor, sentence: Tensor, temperature: float | None = None
) -> tuple[Tensor, Tensor | None]:
    """:func:`generator_scale_loss` and, with a ``temperature`` (``train.d_contrastive``), from
    the same features the fakes' :func:`contrastive_loss` through the discriminator's contrastive
    head: each generated image should be picked by its own caption (None without one)."""
    h = disc.features(fake)
    uncond = disc.unconditional(h) if disc.uncond_logits is not None else None
    adv = generator_adversarial_loss(uncond, disc.conditional(h, sentence))
    if temperature is None:
        return adv, None
    return adv, contrastive_loss(disc.embed(h), sentence, temperature)


def contrastive_loss(image: Tensor, sentence: Tensor, temperature: float = 0.1) -> Tensor:
    """XMC-GAN's sentence-image contrastive loss (Zhang et al., 2021), image to sentence: for each
    image ``[B, D]``, the cross-entropy of picking its own sentence ``[B, D]`` among the batch's by
    cosine / ``temperature``. Another row's sentence equal to the image's own (a repeated caption:
    cosine above 0.999) is left out of its choices rather than counted wrong. A batch of one: 0."""
    img = F.normalize(image.float(), dim=1)
    sen = F.normalize(sentence.detach().float(), dim=1)
    logits = img @ sen.t() / temperature
    rows = torch.arange(img.size(0), device=img.device)
    same = (sen @ sen.t() > 0.999) & (rows[:, None] != rows[None, :])
    return F.cross_entropy(logits.masked_fill(same, float("-inf")), rows)
