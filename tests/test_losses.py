"""Loss terms against the release's per-caption loop and hand-computable cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attngan import losses
from attngan.models import Discriminator

from .reference import sentence_loss_loop, word_loss_loop


def _inputs(batch=6, dim=16, steps=7, side=5, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    regions = torch.randn(batch, dim, side, side, generator=gen, dtype=dtype)
    words = torch.randn(batch, dim, steps, generator=gen, dtype=dtype)
    lengths = torch.randint(1, steps + 1, (batch,), generator=gen)
    lengths[0] = steps  # the longest caption fills T
    lengths[1] = 1  # and a one-word caption
    return regions, words, lengths


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_word_loss_equals_the_release_loop(masked, seed):
    regions, words, lengths = _inputs(seed=seed)
    class_ids = torch.tensor([3, 1, 3, 2, 1, 3]) if masked else None
    batched = losses.word_loss(regions, words, lengths, class_ids)
    loop0, loop1, _ = word_loss_loop(regions, words, lengths, class_ids)
    torch.testing.assert_close(batched.image_to_text, loop0, rtol=1e-5, atol=0)
    torch.testing.assert_close(batched.text_to_image, loop1, rtol=1e-5, atol=0)


def test_word_loss_gradients_equal_the_loop():
    regions, words, lengths = _inputs(batch=5, seed=3, dtype=torch.float64)
    class_ids = torch.tensor([0, 1, 0, 2, 1])
    for fn in ("batched", "loop"):
        r, w = regions.clone().requires_grad_(), words.clone().requires_grad_()
        if fn == "batched":
            loss = losses.word_loss(r, w, lengths, class_ids).total()
        else:
            l0, l1, _ = word_loss_loop(r, w, lengths, class_ids)
            loss = l0 + l1
        loss.backward()
        if fn == "batched":
            grads = (r.grad, w.grad)
        else:
            torch.testing.assert_close(grads[0], r.grad, rtol=1e-7, atol=1e-10)
            torch.testing.assert_close(grads[1], w.grad, rtol=1e-7, atol=1e-10)
    # words past a caption's length take no part: their gradient is exactly zero
    for i, n in enumerate(lengths.tolist()):
        assert torch.count_nonzero(grads[1][i, :, n:]) == 0


def test_word_attention_maps_match_the_loop_and_ignore_padding():
    regions, words, lengths = _inputs(seed=4)
    match = losses.word_match(regions, words, lengths)
    _, _, maps = word_loss_loop(regions, words, lengths)
    assert match.attention.shape == (6, 7, 5, 5)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(match.attention[i, :n], maps[i], rtol=1e-5, atol=1e-7)
        assert torch.all(match.attention[i, n:] == 0)
        sums = match.attention[i, :n].sum(dim=(1, 2))  # each word's attention over regions
        torch.testing.assert_close(sums, torch.ones(n))


def test_padding_content_does_not_change_the_word_loss():
    regions, words, lengths = _inputs(seed=5)
    noisy = words.clone()
    for i, n in enumerate(lengths.tolist()):
        noisy[i, :, n:] = 1e3 * torch.randn_like(noisy[i, :, n:])
    a = losses.word_loss(regions, words, lengths).total()
    b = losses.word_loss(regions, noisy, lengths).total()
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("masked", [False, True])
def test_sentence_loss_equals_the_loop(masked):
    gen = torch.Generator().manual_seed(7)
    image, sentence = torch.randn(2, 8, 32, generator=gen)
    class_ids = torch.tensor([0, 0, 1, 2, 1, 0, 3, 4]) if masked else None
    batched = losses.sentence_loss(image, sentence, class_ids)
    loop0, loop1 = sentence_loss_loop(image, sentence, class_ids)
    torch.testing.assert_close(batched.image_to_text, loop0, rtol=1e-5, atol=0)
    torch.testing.assert_close(batched.text_to_image, loop1, rtol=1e-5, atol=0)


def test_class_masking_removes_same_class_negatives_but_never_the_diagonal():
    scores = torch.zeros(3, 3)
    # all of one class: every off-diagonal pair is masked, so the posterior is certain
    same = losses.matching_loss(scores, torch.tensor([5, 5, 5]))
    assert same.image_to_text.item() == pytest.approx(0.0)
    distinct = losses.matching_loss(scores, torch.tensor([0, 1, 2]))
    assert distinct.image_to_text.item() == pytest.approx(math.log(3))
    assert losses.matching_loss(scores).text_to_image.item() == pytest.approx(math.log(3))


def test_perfect_matching_drives_the_loss_to_zero():
    emb = F.normalize(torch.eye(4), dim=1)
    loss = losses.sentence_loss(emb, emb, gamma3=50.0)
    assert loss.total().item() < 1e-6


def test_kl_loss():
    assert losses.kl_loss(torch.zeros(3, 5), torch.zeros(3, 5)).item() == 0.0
    mu, logvar = torch.full((2, 4), 2.0), torch.full((2, 4), math.log(3.0))
    expected = -0.5 * (1 + math.log(3.0) - 4.0 - 3.0)
    assert losses.kl_loss(mu, logvar).item() == pytest.approx(expected)


def test_discriminator_loss_formula():
    bce = math.log(2)  # BCE of a zero logit against either label
    z = torch.zeros(4)
    assert losses.discriminator_loss(z, z, z, z, z[:3]).item() == pytest.approx(2 * bce)
    big = torch.full((4,), 30.0)
    # confident and right on real and fakes: near zero; the mismatched term counts a third
    loss = losses.discriminator_loss(big, big, -big, -big, big[:3])
    assert loss.item() == pytest.approx(30.0 / 3, rel=1e-4)
    assert losses.discriminator_loss(z, z, z, z, None).item() == pytest.approx(2 * bce)
    assert losses.generator_adversarial_loss(big, big).item() < 1e-10


def test_losses_without_the_unconditional_head():
    torch.manual_seed(0)
    z = torch.zeros(4)
    # the release's formula then: real_cond + (fake_cond + mismatched_cond) / 2
    big = torch.full((4,), 30.0)
    loss = losses.discriminator_loss(None, z, None, -big, big[:3])
    assert loss.item() == pytest.approx(math.log(2) + 30.0 / 2, rel=1e-4)
    disc = Discriminator(16, df=4, embedding_dim=8, unconditional=False)
    real, fake, sentence = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16), torch.randn(3, 8)
    assert torch.isfinite(losses.discriminator_scale_loss(disc, real, fake, sentence))
    assert torch.isfinite(losses.generator_scale_loss(disc, fake, sentence))


def test_generator_scale_loss_reaches_the_fakes():
    torch.manual_seed(0)
    disc = Discriminator(16, df=4, embedding_dim=8)
    fake = torch.randn(3, 3, 16, 16, requires_grad=True)
    loss = losses.generator_scale_loss(disc, fake, torch.randn(3, 8))
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    out = disc(fake, torch.randn(3, 8))
    assert losses.generator_adversarial_loss(
        None, out.conditional
    ) < losses.generator_adversarial_loss(out.unconditional, out.conditional)


def test_class_ids_on_another_device_than_the_scores():
    scores = torch.randn(3, 3, device="meta")
    mask = losses.class_mask(torch.tensor([1, 1, 2]), 3, scores.device)
    assert mask.device.type == "meta"


def test_lengths_on_another_device_than_the_features():
    regions, words = torch.randn(3, 8, 4, 4, device="meta"), torch.randn(3, 8, 5, device="meta")
    match = losses.word_match(regions, words, torch.tensor([5, 2, 1]))
    assert match.scores.shape == (3, 3) and match.scores.device.type == "meta"


def test_discriminator_scale_loss_pairs_image_k_with_sentence_k_plus_1(monkeypatch):
    torch.manual_seed(0)
    disc = Discriminator(16, df=4, embedding_dim=8)
    real, fake, sentence = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16), torch.randn(3, 8)
    seen = []
    original = disc.conditional

    def spy(features, sent):
        seen.append((features, sent))
        return original(features, sent)

    disc.eval()  # BatchNorm on running statistics, so features can be recomputed alike
    monkeypatch.setattr(disc, "conditional", spy)
    loss = losses.discriminator_scale_loss(disc, real, fake.requires_grad_(), sentence)
    assert len(seen) == 3  # real, fake and mismatched pairs
    mismatched = [(f, s) for f, s in seen if f.size(0) == 2]
    assert len(mismatched) == 1
    torch.testing.assert_close(mismatched[0][0], disc.features(real)[:-1])
    assert torch.equal(mismatched[0][1], sentence[1:])
    loss.backward()
    assert fake.grad is None  # the fakes are detached for D's update


def test_r1_penalty_of_a_linear_critic_is_its_squared_weight_norm():
    w = torch.randn(3, 4, 4, dtype=torch.float64)
    real = torch.randn(5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    logits = (real * w).flatten(1).sum(1)  # gradient w for every image
    penalty = losses.r1_penalty(logits, real)
    assert penalty.item() == pytest.approx(w.pow(2).sum().item())
    squared = (real**2).flatten(1).sum(1)  # gradient 2x: penalty mean of 4|x|^2
    expected = (4 * real.detach() ** 2).flatten(1).sum(1).mean()
    assert losses.r1_penalty(squared, real).item() == pytest.approx(expected.item())


def test_discriminator_loss_with_r1_adds_half_gamma_times_the_penalty():
    torch.manual_seed(0)
    disc = Discriminator(16, df=4, embedding_dim=8).eval()  # running statistics: repeatable
    real, fake, sentence = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 8)
    plain = losses.discriminator_scale_loss(disc, real, fake, sentence)
    with_r1 = losses.discriminator_scale_loss(disc, real, fake, sentence, r1_gamma=10.0)
    x = real.clone().requires_grad_(True)
    out = disc(x, sentence)
    (grad,) = torch.autograd.grad((out.unconditional + out.conditional).sum(), x)
    penalty = grad.pow(2).flatten(1).sum(1).mean()
    assert penalty > 0
    torch.testing.assert_close(with_r1, plain + 5.0 * penalty)
    assert not real.requires_grad  # the caller's images are left alone
    # the penalty reaches D's weights (double backward): its gradient differs from plain's
    params = [p for p in disc.parameters() if p.requires_grad]
    g_plain = torch.autograd.grad(plain, params, allow_unused=True)
    g_r1 = torch.autograd.grad(with_r1, params, allow_unused=True)
    changed = [a is not None and b is not None and not torch.allclose(a, b)
               for a, b in zip(g_plain, g_r1, strict=True)]  # fmt: skip
    assert sum(changed) >= len(params) // 2


def test_rank_shares_of_the_word_loss_average_to_the_whole_batch_loss():
    regions, words, lengths = _inputs(batch=6, seed=4, dtype=torch.float64)
    class_ids = torch.tensor([3, 1, 3, 2, 1, 3])
    whole_r = regions.clone().requires_grad_()
    whole = losses.word_loss(whole_r, words, lengths, class_ids)
    whole.total().backward()
    shared_r = regions.clone().requires_grad_()
    shares = [
        losses.sharded_word_loss(
            shared_r[k : k + 2],
            shared_r,
            words[k : k + 2],
            words,
            lengths[k : k + 2],
            lengths,
            first=k,
            all_class_ids=class_ids,
        )  # fmt: skip
        for k in (0, 2, 4)  # 3 "ranks" of 2 samples
    ]
    for part in ("image_to_text", "text_to_image"):
        mean = sum(getattr(s, part) for s in shares) / 3
        torch.testing.assert_close(mean, getattr(whole, part))
    (sum(s.total() for s in shares) / 3).backward()
    torch.testing.assert_close(shared_r.grad, whole_r.grad)
    rect = losses.word_match(regions[:2], words, lengths)
    assert rect.scores.shape == (2, 6) and rect.attention is None


def test_hard_negative_loss_adds_one_column_per_image():
    import torch.nn.functional as F

    from attngan.losses import hard_negative_loss

    torch.manual_seed(0)
    scores, negative = torch.randn(4, 4), torch.randn(4)
    valid = torch.tensor([True, False, True, True])
    got = hard_negative_loss(scores, negative, valid)
    want = torch.stack(
        [F.cross_entropy(torch.cat([scores[j], negative[j : j + 1]])[None], torch.tensor([j]))
         for j in (0, 2, 3)]
    ).mean()  # fmt: skip
    torch.testing.assert_close(got, want)
    # a negative scored far above the true caption costs a lot; far below, nothing more
    easy = hard_negative_loss(scores, torch.full((4,), -1e3))
    hard = hard_negative_loss(scores, torch.full((4,), 1e3))
    torch.testing.assert_close(easy, F.cross_entropy(scores, torch.arange(4)))
    assert hard > 100
    assert hard_negative_loss(scores, negative, torch.zeros(4, dtype=torch.bool)) == 0
    # a same-class caption is no negative: masking image 0's class twin (caption 1) drops it
    classes = torch.tensor([7, 7, 8, 9])
    masked = hard_negative_loss(scores, negative, valid, classes)
    row0 = torch.cat([scores[0, [0, 2, 3]], negative[:1]])[None]
    rows = [F.cross_entropy(row0, torch.tensor([0]))] + [
        F.cross_entropy(torch.cat([scores[j], negative[j : j + 1]])[None], torch.tensor([j]))
        for j in (2, 3)
    ]
    torch.testing.assert_close(masked, torch.stack(rows).mean())


def test_swapped_caption_loss_prefers_the_true_caption():
    import math

    from attngan.losses import swapped_caption_loss

    torch.manual_seed(0)
    regions, image = torch.randn(3, 8, 2, 2), torch.randn(3, 8)
    words, sentence = torch.randn(3, 8, 4), torch.randn(3, 8)
    lengths, valid = torch.tensor([4, 3, 2]), torch.tensor([True, True, False])
    same = swapped_caption_loss(regions, image, words, sentence, words, sentence, lengths, valid)
    torch.testing.assert_close(same, torch.tensor(2 * math.log(2)))  # a swap that changes nothing
    # a swapped caption that matches the image better costs more than one that matches it worse
    closer = (regions.flatten(2).mean(2)[:, :, None].expand(3, 8, 4), image)
    farther = (-closer[0], -image)
    hard = swapped_caption_loss(regions, image, words, sentence, *closer, lengths, valid)
    easy = swapped_caption_loss(regions, image, words, sentence, *farther, lengths, valid)
    assert hard > same > easy
    none = torch.zeros(3, dtype=torch.bool)
    assert swapped_caption_loss(regions, image, words, sentence, *closer, lengths, none) == 0


def test_matching_aware_penalty_of_a_bilinear_critic():
    """D(x, s) = <x, W> + <s, u>: its gradients are W and u for every pair, so the penalty is
    (|W|^2 + |u|^2)^(p/2)."""
    w = torch.randn(3, 4, 4, dtype=torch.float64)
    u = torch.randn(6, dtype=torch.float64)
    real = torch.randn(5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    sentence = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    logits = (real * w).flatten(1).sum(1) + sentence @ u
    expected = (w.pow(2).sum() + u.pow(2).sum()).sqrt() ** 6
    penalty = losses.matching_aware_penalty(logits, real, sentence, power=6)
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-6)  # float32 norms
    assert losses.matching_aware_penalty(logits, real, sentence, power=2).item() == pytest.approx(
        (w.pow(2).sum() + u.pow(2).sum()).item(), rel=1e-6
    )


def test_discriminator_loss_with_magp_adds_the_weighted_penalty():
    torch.manual_seed(0)
    disc = Discriminator(16, df=4, embedding_dim=8).eval()
    real, fake, sentence = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 8)
    plain = losses.discriminator_scale_loss(disc, real, fake, sentence)
    with_gp = losses.discriminator_scale_loss(disc, real, fake, sentence, magp_weight=2.0,
                                              magp_power=6.0)  # fmt: skip
    x, s = real.clone().requires_grad_(True), sentence.clone().requires_grad_(True)
    gx, gs = torch.autograd.grad(disc(x, s).conditional.sum(), (x, s))
    norm = torch.cat([gx.flatten(1), gs.flatten(1)], 1).norm(dim=1)
    torch.testing.assert_close(with_gp, plain + 2.0 * norm.pow(6).mean())
    assert not real.requires_grad and not sentence.requires_grad


def test_mode_seeking_loss_is_the_inverse_image_to_noise_distance_ratio():
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    za, zb = torch.zeros(2, 5), torch.full((2, 5), 2.0)
    assert losses.mode_seeking_loss(a, b, za, zb).item() == pytest.approx(1 / (0.25 + 1e-5))
    same = losses.mode_seeking_loss(a, a, za, zb)  # collapse: large loss
    assert same.item() == pytest.approx(1e5)
    x = b.clone().requires_grad_(True)
    losses.mode_seeking_loss(a, x, za, zb).backward()
    assert (x.grad < 0).all()  # pushing the images apart lowers it


def test_cutout_zeroes_one_square_per_image_and_keeps_the_rest():
    images = torch.rand(64, 3, 16, 16) + 0.5  # no zeros of their own
    gen = torch.Generator().manual_seed(0)
    out = losses.cutout(images, 0.25, gen)
    zeroed = (out == 0).all(1)  # [B, 16, 16] pixels cut in every channel
    assert ((out == 0) == zeroed[:, None]).all()  # cut across all channels or none
    counts = zeroed.flatten(1).sum(1)
    assert counts.max() == 16 and counts.min() >= 4  # a 4x4 square, partly off the edge at most
    kept = ~zeroed[:, None].expand_as(out)
    assert torch.equal(out[kept], images[kept])
    for b in range(64):  # the cut pixels form one axis-aligned square
        ys, xs = zeroed[b].nonzero(as_tuple=True)
        assert (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) == counts[b]
    again = losses.cutout(images, 0.25, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, losses.cutout(images, 0.25, torch.Generator().manual_seed(1)))


def test_random_shift_moves_each_image_within_range_and_passes_gradients():
    images = torch.full((200, 3, 16, 16), -1.0)
    images[:, :, 6:10, 5:11] = 1.0  # a 4 x 6 bar away from the border
    images.requires_grad_(True)
    out = losses.random_shift(images, 3, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    moves = set()
    for b in range(200):
        ys, xs = (out[b, 0] > 0).nonzero(as_tuple=True)
        assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (4, 6)  # moved, not resized
        moves.add((int(ys.min()) - 6, int(xs.min()) - 5))
    assert {dy for dy, _ in moves} == {dx for _, dx in moves} == set(range(-3, 4))
    out.sum().backward()  # every output pixel comes from one input pixel
    assert images.grad is not None and images.grad.sum() == out.numel()
    again = losses.random_shift(images, 3, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert losses.random_shift(images, 0, torch.Generator()) is images


def test_paired_l1_is_the_summed_mean_absolute_difference_per_stage():
    torch.manual_seed(0)
    reals = [torch.rand(2, 3, 4, 4), torch.rand(2, 3, 8, 8)]
    assert losses.paired_l1_loss(reals, reals).item() == 0.0
    fakes = [reals[0] + 0.5, reals[1] - 0.25]  # off by 0.5 at 4 px, 0.25 at 8 px
    assert losses.paired_l1_loss(fakes, reals).item() == pytest.approx(0.75)
    x = fakes[1].clone().requires_grad_(True)
    losses.paired_l1_loss([fakes[0], x], reals).backward()
    assert (x.grad < 0).all()  # every pixel, below its real one, pushed up towards it
    with pytest.raises(ValueError, match="2 generated stages, 1 real"):
        losses.paired_l1_loss(fakes, reals[:1])


def test_paired_feature_loss_is_one_minus_the_regions_cosine():
    torch.manual_seed(0)
    real = torch.randn(2, 8, 3, 3)
    assert losses.paired_feature_loss(3 * real, real).item() == pytest.approx(0, abs=1e-6)
    assert losses.paired_feature_loss(-real, real).item() == pytest.approx(2, abs=1e-6)
    other = torch.randn(2, 8, 3, 3)
    expected = 1 - torch.nn.functional.cosine_similarity(other, real, dim=1).mean()
    assert losses.paired_feature_loss(other, real).item() == pytest.approx(expected.item())
    x = other.clone().requires_grad_(True)
    losses.paired_feature_loss(x, real).backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ"):
        losses.paired_feature_loss(other, real[:, :, :2])


def test_stage_consistency_is_zero_for_a_pyramid_and_grows_with_disagreement():
    big = torch.rand(2, 3, 32, 32) * 2 - 1
    small = F.interpolate(big, size=16, mode="bilinear", antialias=True)
    tiny = F.interpolate(big, size=8, mode="bilinear", antialias=True)
    assert losses.stage_consistency_loss([tiny, small, big]).item() == pytest.approx(0, abs=1e-6)
    assert losses.stage_consistency_loss([big]).item() == 0.0
    off = losses.stage_consistency_loss([tiny, -small, big])  # one stage inverted
    expected = (2 * small.abs()).mean() / 2  # that stage's error, averaged over two stages
    assert off.item() == pytest.approx(expected.item(), rel=1e-5)
    x = small.clone().requires_grad_(True)
    losses.stage_consistency_loss([x + 0.5, big]).backward()
    assert x.grad is not None and (x.grad > 0).all()  # pulls the small stage back down


def test_discriminator_hard_negatives_add_weighted_mismatched_pairs():
    torch.manual_seed(0)
    disc = Discriminator(16, df=4, embedding_dim=8).eval()
    real, fake, sentence = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 8)
    swapped = torch.randn(2, 8)
    rows = torch.tensor([0, 2])
    plain = losses.discriminator_scale_loss(disc, real, fake, sentence)
    hard = losses.Mismatched(rows, swapped, 3.0)
    with_hard = losses.discriminator_scale_loss(disc, real, fake, sentence, hard=hard)
    logits = disc(real[rows], swapped).conditional
    extra = F.binary_cross_entropy_with_logits(logits, torch.zeros(2))
    torch.testing.assert_close(with_hard, plain + 3.0 * extra)
    none = losses.Mismatched(torch.zeros(0, dtype=torch.long), torch.zeros(0, 8), 3.0)
    torch.testing.assert_close(losses.discriminator_scale_loss(disc, real, fake, sentence,
                                                               hard=none), plain)  # fmt: skip


def test_blur_negatives_add_the_blurred_reals_as_fakes():
    torch.manual_seed(0)
    disc = Discriminator(16, df=4, embedding_dim=8).eval()
    real, fake, sentence = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 8)
    plain = losses.discriminator_scale_loss(disc, real, fake, sentence)
    with_blur = losses.discriminator_scale_loss(disc, real, fake, sentence, blur_negatives=2.0)
    out = disc(losses.blur_images(real), sentence)
    bce = F.binary_cross_entropy_with_logits
    extra = (bce(out.conditional, torch.zeros(4)) + bce(out.unconditional, torch.zeros(4))) / 2
    torch.testing.assert_close(with_blur, plain + 2.0 * extra)


def test_blur_images_keeps_colour_and_removes_edges():
    image = torch.zeros(1, 3, 48, 48)
    image[..., 12:36, 12:36] = 1.0  # a sharp square
    blurred = losses.blur_images(image)  # sigma 1 px at 48 px
    assert blurred.sum().item() == pytest.approx(image.sum().item(), rel=1e-3)
    assert blurred[..., 24, 24].min() == pytest.approx(1.0, abs=1e-4)  # inside: unchanged
    edge = blurred[0, 0, 24, 11:13]  # just outside and inside the left edge
    assert 0.05 < edge[0] < 0.5 and 0.5 < edge[1] < 0.95


def test_paired_negatives_add_their_fake_loss_with_the_real_captions():
    torch.manual_seed(0)
    disc = Discriminator(16, df=4, embedding_dim=8).eval()
    real, fake, sentence = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 8)
    negatives = torch.randn(4, 3, 16, 16)
    plain = losses.discriminator_scale_loss(disc, real, fake, sentence)
    paired = losses.discriminator_scale_loss(disc, real, fake, sentence, negatives=negatives,
                                             negatives_weight=1.5)  # fmt: skip
    out = disc(negatives, sentence)
    bce = F.binary_cross_entropy_with_logits
    extra = (bce(out.conditional, torch.zeros(4)) + bce(out.unconditional, torch.zeros(4))) / 2
    torch.testing.assert_close(paired, plain + 1.5 * extra)
    off = losses.discriminator_scale_loss(disc, real, fake, sentence, negatives=negatives)
    torch.testing.assert_close(off, plain)  # weight 0: the negatives are not used


def test_instance_noise_is_seeded_gaussian_noise_of_the_given_sigma():
    images = torch.zeros(8, 3, 32, 32)
    a = losses.instance_noise(images, 0.1, torch.Generator().manual_seed(3))
    b = losses.instance_noise(images, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == images.dtype
    assert a.std().item() == pytest.approx(0.1, rel=0.05) and abs(a.mean().item()) < 0.01
    ramp = torch.linspace(-1, 1, 32).expand(8, 3, 32, 32)
    assert torch.equal(losses.instance_noise(ramp, 0.0, torch.Generator()), ramp)


def test_noise_level_falls_linearly_to_zero():
    assert losses.noise_level(0.2, 0, 10**6) == 0.2  # constant
    assert losses.noise_level(0.2, 1000, 0) == 0.2
    assert losses.noise_level(0.2, 1000, 250) == pytest.approx(0.15)
    assert losses.noise_level(0.2, 1000, 1000) == 0.0 == losses.noise_level(0.2, 1000, 5000)


def test_contrastive_loss_picks_each_image_s_own_sentence():
    torch.manual_seed(0)
    sentence = torch.randn(6, 8)
    aligned = losses.contrastive_loss(sentence * 3.0, sentence, temperature=0.05)  # cosine 1
    shuffled = losses.contrastive_loss(sentence.roll(1, 0), sentence, temperature=0.05)
    assert aligned < 0.05 < 5.0 < shuffled
    # by hand: cross-entropy of cosine / temperature, image to sentence
    image = torch.randn(6, 8)
    cos = F.normalize(image, dim=1) @ F.normalize(sentence, dim=1).t()
    torch.testing.assert_close(losses.contrastive_loss(image, sentence, 0.2),
                               F.cross_entropy(cos / 0.2, torch.arange(6)))  # fmt: skip
    # a repeated caption is left out of the other row's choices, not counted wrong
    repeated = sentence.clone()
    repeated[3] = repeated[1]
    cos = F.normalize(image, dim=1) @ F.normalize(repeated, dim=1).t()
    cos[1, 3] = cos[3, 1] = float("-inf")
    torch.testing.assert_close(losses.contrastive_loss(image, repeated, 0.2),
                               F.cross_entropy(cos / 0.2, torch.arange(6)))  # fmt: skip
    assert losses.contrastive_loss(image[:1], sentence[:1]).item() == 0.0
    # the sentence is a fixed target: no gradient reaches it
    sentence.requires_grad_(True)
    image.requires_grad_(True)
    losses.contrastive_loss(image, sentence).backward()
    assert sentence.grad is None and image.grad.abs().sum() > 0


def test_discriminator_contrastive_head_adds_the_real_images_term():
    torch.manual_seed(0)
    disc = Discriminator(16, df=4, embedding_dim=8, contrastive=True).eval()
    real, fake, sentence = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 8)
    plain = losses.discriminator_scale_loss(disc, real, fake, sentence)
    with_term = losses.discriminator_scale_loss(disc, real, fake, sentence, contrastive=2.0,
                                                temperature=0.5)  # fmt: skip
    embedded = disc.embed(disc.features(real))
    assert embedded.shape == (4, 8)
    expected = plain + 2.0 * losses.contrastive_loss(embedded, sentence, 0.5)
    torch.testing.assert_close(with_term, expected)
    # the generator's terms: the adversarial loss as before, and the fakes' contrastive loss
    adv, contrast = losses.generator_scale_terms(disc, fake, sentence, 0.5)
    torch.testing.assert_close(adv, losses.generator_scale_loss(disc, fake, sentence))
    torch.testing.assert_close(
        contrast, losses.contrastive_loss(disc.embed(disc.features(fake)), sentence, 0.5)
    )
    # the head reads the maximum over positions: a feature at one place is not averaged away
    h = torch.zeros(2, disc.features_dim, 4, 4)
    h[0, :, 3, 3] = 1.0
    h[1, :, 0, 0] = 1.0
    torch.testing.assert_close(disc.embed(h)[0], disc.embed(h)[1])
    with pytest.raises(RuntimeError, match="without a contrastive head"):
        Discriminator(16, df=4, embedding_dim=8).embed(h)
