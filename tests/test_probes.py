"""The diagnosis tools of the `shapes` ladder (docs/evaluation.md): the blob twin that
``benchmarks/d_shape_probe.py`` scores against the real scene, and the linear probes of
``benchmarks/conditioning_probe.py``."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.data.shapes import render_blob_twin
from attngan.errors import AttnGANError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
BUNDLED = Path(__file__).resolve().parents[1] / "src" / "attngan" / "assets" / "shapes-model"

from conditioning_probe import centroid_cosines, explained, probe  # noqa: E402


def test_blob_twin_keeps_the_scene_but_not_the_outline():
    sharp, blob, record = render_blob_twin("test", 3, seed=0, image_size=64)
    a = np.asarray(sharp, dtype=np.float64)
    b = np.asarray(blob, dtype=np.float64)
    assert a.shape == b.shape == (64, 64, 3) and record["objects"]
    near = np.zeros((64, 64), dtype=bool)  # within a few pixels of an object's box
    for obj in record["objects"]:
        x0, y0, x1, y1 = obj["bbox"]  # in pixels of the 64 px image
        near[max(y0 - 6, 0) : y1 + 6, max(x0 - 6, 0) : x1 + 6] = True
    assert np.array_equal(a[~near], b[~near])  # the background is the same image
    assert np.abs(a[near] - b[near]).mean() > 1  # the objects are not
    # softer: the blob's strongest edges inside the objects' boxes are weaker than the shape's
    grad = lambda img: np.abs(np.diff(img, axis=0))[near[1:]].max()  # noqa: E731
    assert grad(b) < grad(a)


def test_probe_reads_planted_labels_and_not_noise():
    torch.manual_seed(0)
    labels = torch.randint(0, 8, (800,))
    train = torch.arange(800) < 400
    noise = torch.randn(800, 32)
    planted = noise.clone()
    planted[:, :8] += 6 * torch.nn.functional.one_hot(labels, 8)
    assert probe(planted, labels, train) > 0.9
    assert probe(noise, labels, train) < 0.25  # chance is 0.125


def test_explained_variance_share():
    labels = torch.arange(100) % 4
    means = torch.randn(4, 16)
    assert abs(explained(means[labels], labels) - 1) < 1e-6  # the label is all there is
    torch.manual_seed(1)
    assert explained(torch.randn(4000, 16), torch.arange(4000) % 4) < 0.01


def test_centroid_cosines_find_the_groups_a_representation_merges():
    torch.manual_seed(0)
    labels = torch.arange(300) % 3
    means = torch.randn(3, 10)
    means[1, 1:] = means[0, 1:]  # groups 0 and 1 differ in one dimension of ten
    x = means[labels] + 0.1 * torch.randn(300, 10)
    cos = centroid_cosines(x, labels)
    assert cos.shape == (3, 3) and torch.allclose(cos.diagonal(), torch.ones(3))
    assert cos[0, 1] > 0.5 > cos[0, 2]  # groups 0 and 1 nearly merged, 2 apart
    assert torch.allclose(cos, cos.t())


def test_d_capacity_trains_a_fresh_discriminator_on_blob_twins():
    from d_capacity import train_and_score

    rows = train_and_score([], steps=100, scenes=96, test_scenes=48, batch=8, every=100)
    assert [(size, step) for size, step, _ in rows] == [(32, 0), (32, 100), (64, 0), (64, 100)]
    shares = {(size, step): share for size, step, share in rows}
    for size in (32, 64):  # 100 steps on 96 scenes already tell shapes from blobs on new scenes
        assert shares[(size, 100)] > max(0.65, shares[(size, 0)])


def test_g_capacity_fits_a_fresh_generator_to_scenes():
    from g_capacity import fit_and_score

    rows = fit_and_score([], steps=100, scenes=8, batch=8, every=50)
    assert [row["step"] for row in rows] == [0, 50, 100]
    first, last = rows[0], rows[-1]
    assert set(last) == {"step", "l1", "shape", "colour", "position", "realism"}
    # told what to draw, the generator learns it, outlines included, within 100 steps
    assert last["l1"] < 0.3 * first["l1"]
    assert last["colour"] >= 0.8 > first["colour"]
    assert last["shape"] >= 0.5 > first["shape"]
    assert last["realism"] > first["realism"] + 0.3


def test_d_generalisation_head_means_batch_as_told():
    from d_generalisation import head_means

    from attngan.models import Discriminator

    torch.manual_seed(0)
    images, sentences = torch.randn(7, 3, 16, 16), torch.randn(7, 8)
    disc = Discriminator(16, df=4, embedding_dim=8).eval()  # eval: each image on its own
    means = head_means(disc, images, sentences, batch=3)  # batches of 3, 3 and 1
    with torch.no_grad():
        whole = disc(images, sentences)
    assert means["unconditional"] == pytest.approx(whole.unconditional.mean().item(), abs=1e-5)
    assert means["conditional"] == pytest.approx(whole.conditional.mean().item(), abs=1e-5)
    only_cond = Discriminator(16, df=4, embedding_dim=8, unconditional=False).eval()
    assert set(head_means(only_cond, images, sentences, batch=3)) == {"conditional"}


def test_gan_loop_runs_each_variant_and_scores_its_samples(tmp_path):
    from gan_loop import crispness, load_images, make_parser, run, shape_labels, unzoom

    from attngan.data.shapes import build_shapes
    from attngan.evaluation.shapes_classifier import load_shapes_classifier

    root = tmp_path / "shapes"
    build_shapes(root, num_train=60, num_test=4, image_size=128, workers=1, progress=False)
    everything, simple = load_images(root, False), load_images(root, True)
    assert everything.shape[1:] == (3, 64, 64) and everything.dtype == torch.uint8
    assert 0 < len(simple) < len(everything)
    classifier = load_shapes_classifier(None)
    real = crispness(classifier, everything[:32])
    blank = crispness(classifier, torch.full((8, 3, 64, 64), 128, dtype=torch.uint8))
    assert real["crisp"] > 0.8 and real["objects"] >= 1  # the classifier reads real shapes
    assert blank["objects"] < 0.5
    # --zoom: each simple image's object, full size, in the middle; unzoom gives it back at the
    # classifier's scale, one object in the middle cell
    zoomed = load_images(root, True, zoom=True)
    assert zoomed.shape == simple.shape
    back = crispness(classifier, unzoom(zoomed))
    assert back["objects"] == pytest.approx(1, abs=0.2) and back["crisp"] > 0.8
    labels = shape_labels(root)
    assert len(labels) == len(simple) and labels.min() >= 0 and labels.max() < 8
    # --d-blur: the blur keeps the scene (mean colour) and what the classifier reads, not edges
    from gan_loop import blur

    x = simple.float() / 127.5 - 1
    soft = blur(x, 1.5)
    assert soft.mean().item() == pytest.approx(x.mean().item(), abs=0.01)
    assert soft.diff(dim=3).abs().max() < 0.6 * x.diff(dim=3).abs().max()
    assert crispness(classifier, ((soft + 1) * 127.5).round().to(torch.uint8))["crisp"] > 0.8
    told = crispness(classifier, simple, labels)
    assert told["right"] > 0.8  # the classifier reads each real object as its label's shape
    assert crispness(classifier, simple, (labels + 1) % 8)["right"] < 0.2
    variants = (
        [],
        ["--d-head", "patch", "--d-norm", "none", "--r1", "1"],
        ["--recon", "10"],
        ["--d-recon", "1", "--d-batch", "joint", "--beta1", "0", "--lr-d", "4e-4"],
        ["--g-arch", "resnet", "--d-arch", "resnet", "--loss", "hinge", "--beta2", "0.9"],
        ["--d-arch", "resnet", "--d-norm", "none", "--d-recon", "1"],
        ["--simple", "--labels"],
        ["--simple", "--zoom", "--labels", "--g-arch", "resnet", "--d-arch", "resnet"],
        ["--simple", "--labels", "--g-arch", "dcgan", "--d-arch", "dcgan", "--d-blur", "1"],
        ["--simple", "--d-features", str(BUNDLED), "--loss", "hinge"],
        ["--simple", "--d-features", str(BUNDLED), "--d-features-scales", "all"],
        ["--simple", "--n-dis", "3", "--ema", "0.9", "--labels", "--ema-standing", "2"],
        ["--simple", "--labels", "--ac", "1", "--g-arch", "dcgan", "--d-arch", "dcgan"],
        ["--simple", "--labels", "--ms", "1", "--ac", "1", "--ac-pool", "mean"],
        ["--ms", "2", "--g-arch", "resnet", "--d-arch", "resnet"],
        ["--simple", "--labels", "--recon", "10"],
        ["--simple", "--ac", "1"],  # unconditional: the classifier teaches D only
        ["--simple", "--labels", "--ac", "1", "--ac-g", "0"],
        ["--simple", "--g-norm", "pixel", "--g-coord"],
        ["--g-norm", "none", "--g-arch", "dcgan", "--d-arch", "dcgan", "--g-coord"],
        ["--imle", "1", "--imle-pool", "3"],
        ["--simple", "--labels", "--imle", "1", "--gan", "0", "--imle-pool", "2"],
        ["--imle", "1", "--imle-loss", "lap", "--imle-pool", "2"],
        ["--simple", "--labels", "--d-adv", "0.03"],
    )
    for extra in variants:
        small = ["--steps", "4", "--every", "2", "--batch", "4", "--gf", "8", "--df", "8"]
        args = make_parser().parse_args(
            [str(tmp_path / "out"), "--data", str(root), *small, *extra]
        )
        rows = run(args)
        assert [row["step"] for row in rows] == [2, 4]
        assert ("recon_crisp" in rows[-1]) == ("--recon" in extra)
        assert ("right" in rows[-1]) == ("--labels" in extra)
        assert ("recon_right" in rows[-1]) == ("--labels" in extra and "--recon" in extra)
        assert ("ema_objects" in rows[-1]) == ("--ema" in extra)
        assert ("emas_objects" in rows[-1]) == ("--ema-standing" in extra)
        assert (tmp_path / "out" / "step-00004.png").is_file()
    assert (tmp_path / "out" / "ema-00004.png").is_file()
    with pytest.raises(AttnGANError, match="n-dis"):
        run(make_parser().parse_args([str(tmp_path / "out"), "--data", str(root), "--n-dis", "0"]))
    with pytest.raises(AttnGANError, match="--ema-standing needs --ema"):
        run(make_parser().parse_args([str(tmp_path / "out"), "--data", str(root),
                                      "--ema-standing", "5"]))  # fmt: skip
    with pytest.raises(AttnGANError, match="--ac needs --simple"):
        run(make_parser().parse_args([str(tmp_path / "out"), "--data", str(root), "--ac", "1"]))
    with pytest.raises(AttnGANError, match="--ac-g needs --ac and --labels"):
        run(make_parser().parse_args([str(tmp_path / "out"), "--data", str(root), "--simple",
                                      "--ac", "1", "--ac-g", "1"]))  # fmt: skip


def test_gan_loop_extra_discriminator_steps_change_the_run_and_one_keeps_it(tmp_path, monkeypatch):
    import gan_loop

    from attngan.data.shapes import build_shapes

    made = []

    class Recorded(gan_loop.UncondDiscriminator):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(gan_loop, "UncondDiscriminator", Recorded)
    root = tmp_path / "shapes"
    build_shapes(root, num_train=24, num_test=2, image_size=64, workers=1, progress=False)
    small = ["--data", str(root), "--steps", "2", "--every", "2", "--batch", "4", "--gf", "4",
             "--df", "4"]  # fmt: skip

    def d_weights(extra: list[str]) -> torch.Tensor:
        gan_loop.run(gan_loop.make_parser().parse_args([str(tmp_path / "out"), *small, *extra]))
        return torch.cat([p.detach().flatten() for p in made[-1].parameters()])

    base = d_weights([])
    assert torch.equal(base, d_weights(["--n-dis", "1"]))  # deterministic, one step as before
    assert not torch.allclose(base, d_weights(["--n-dis", "2"]))
    # --ac without labels: the same unconditional game, but the classifier's loss on the real
    # images' shapes reaches the discriminator's trunk
    simple = d_weights(["--simple"])
    assert torch.equal(simple, d_weights(["--simple"]))
    assert not torch.allclose(simple, d_weights(["--simple", "--ac", "1"]))


def test_gan_loop_imle_pulls_each_real_image_s_nearest_sample(tmp_path, monkeypatch):
    import gan_loop

    from attngan.data.shapes import build_shapes

    # the matching: a generator whose image is z's first three numbers, everywhere
    def g(z: torch.Tensor, y) -> torch.Tensor:
        return z[:, :3, None, None].expand(-1, 3, 4, 4)

    real = torch.tensor([[0.5, -0.5, 1.0], [-1.0, 0.0, 0.2]])[:, :, None, None].expand(-1, 3, 4, 4)
    pick = gan_loop.imle_pick(g, real, None, 16, torch.Generator().manual_seed(3))
    drawn = torch.randn(16, 2, gan_loop.Z_DIM, generator=torch.Generator().manual_seed(3))
    for i in range(2):
        dist = (drawn[:, i, :3] - real[i, :, 0, 0]).pow(2).sum(1)
        assert torch.equal(pick[i], drawn[dist.argmin(), i])
    assert gan_loop.imle_pick(g, real, None, 1, torch.Generator().manual_seed(3)).shape == (2, 100)

    # the Laplacian pyramid's L1: a change of tone counts as in plain L1, a small object far more
    plain = torch.zeros(2, 3, 64, 64)
    toned = plain + 0.5
    spot = plain.clone()
    spot[:, :, 20:26, 30:36] = 1.0
    assert torch.allclose(gan_loop.laplacian_l1(plain, plain), torch.zeros(2))
    assert torch.allclose(gan_loop.laplacian_l1(plain, toned), torch.full((2,), 0.5))
    pixel = gan_loop.image_distance(plain, spot, "l1")
    assert torch.all(gan_loop.image_distance(plain, spot, "lap") > 2 * pixel)
    assert torch.allclose(gan_loop.image_distance(plain, toned, "l2"), torch.full((2,), 0.25))
    lap_pick = gan_loop.imle_pick(g, real, None, 16, torch.Generator().manual_seed(3), "lap")
    assert lap_pick.shape == (2, 100)

    # --gan 0: no discriminator step at all, the generator learns from IMLE's term
    made = {}
    for name in ("UncondDiscriminator", "UncondGenerator"):
        base = getattr(gan_loop, name)

        def recorded(*args, _base=base, _name=name, **kwargs):
            made[_name] = _base(*args, **kwargs)
            made[_name + "0"] = [p.detach().clone() for p in made[_name].parameters()]
            return made[_name]

        monkeypatch.setattr(gan_loop, name, recorded)
    root = tmp_path / "shapes"
    build_shapes(root, num_train=24, num_test=2, image_size=64, workers=1, progress=False)
    small = ["--data", str(root), "--steps", "3", "--every", "3", "--batch", "4", "--gf", "4",
             "--df", "4"]  # fmt: skip
    gan_loop.run(gan_loop.make_parser().parse_args([str(tmp_path / "o"), *small, "--imle", "1",
                                                    "--gan", "0"]))  # fmt: skip
    d_now = list(made["UncondDiscriminator"].parameters())
    g_now = list(made["UncondGenerator"].parameters())
    assert all(torch.equal(a, b) for a, b in zip(d_now, made["UncondDiscriminator0"], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(g_now, made["UncondGenerator0"], strict=True))
    assert made["UncondGenerator"].net.ca.sample is False  # a sample is a function of z
    for extra, match in ((["--gan", "0"], "--gan 0"), (["--imle", "-1"], "--imle"),
                         (["--imle", "1", "--recon", "1"], "pick one"),
                         (["--imle", "1", "--gan", "0", "--n-dis", "2"], "--gan 0")):  # fmt: skip
        with pytest.raises(AttnGANError, match=match):
            gan_loop.run(gan_loop.make_parser().parse_args([str(tmp_path / "o"), *small, *extra]))


def test_gpu_loop_script_dry_run_on_the_cpu(tmp_path):
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OUT": str(tmp_path / "out"), "DEVICE": "cpu", "BUDGET": "200",
           "STEPS": "2", "EVERY": "1", "NUM_TRAIN": "60", "VARIANTS": "tiny=--gf 4 --df 4",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    done = subprocess.run(["bash", str(root / "benchmarks" / "gpu_loop.sh")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "== tiny" in done.stdout and "step 2 " in done.stdout and "ema_crisp" in done.stdout
    assert {p.name for p in (tmp_path / "out" / "tiny").iterdir()} == {
        "tiny.log",
        "step-00002.png",
        "ema-00002.png",
    }


def test_gan_loop_calibration_scores_degraded_reals_lower(tmp_path):
    from gan_loop import calibrate

    from attngan.data.shapes import build_shapes

    root = tmp_path / "shapes"
    build_shapes(root, num_train=80, num_test=2, image_size=128, workers=1, progress=False)
    rows = calibrate(root, simple=True)
    assert rows["as they are"]["crisp"] > 0.8 and rows["as they are"]["right"] > 0.8
    assert rows["via 16 px"]["crisp"] < rows["as they are"]["crisp"] - 0.1
    assert set(rows) >= {"noise 0.05", "blur 2 px", "via 32 px"}


def test_gan_loop_probe_d_trains_a_shape_readout(tmp_path):
    from gan_loop import make_parser, probe_d

    from attngan.data.shapes import build_shapes

    root = tmp_path / "shapes"
    build_shapes(root, num_train=200, num_test=2, image_size=64, workers=1, progress=False)
    args = make_parser().parse_args(
        [
            str(tmp_path / "out"),
            "--data",
            str(root),
            "--probe-d",
            "max",
            "--steps",
            "4",
            "--every",
            "2",
            "--batch",
            "4",
            "--df",
            "4",
        ]  # fmt: skip
    )
    with pytest.raises(AttnGANError, match="more than 500"):
        probe_d(args)
    rows = probe_d(args, held=10)
    assert [row[0] for row in rows] == [2, 4]
    assert all(row[1] > 0 and 0 <= row[2] <= 1 for row in rows)
    # --ac and --probe-d pool the 8x8 map with the same function
    from gan_loop import readout

    h8 = torch.zeros(2, 3, 8, 8)
    h8[0, 1, 4, 5] = 8.0
    assert readout(h8, "max")[0, 1] == 8.0 and readout(h8, "mean")[0, 1] == 0.125


def test_gan_loop_resnet_pair_shapes_and_spectral_norm():
    from gan_loop import ResNetDiscriminator, ResNetGenerator

    torch.manual_seed(0)
    g = ResNetGenerator(4)
    images = g(torch.randn(3, 100))
    assert images.shape == (3, 3, 64, 64) and images.abs().max() <= 1
    d = ResNetDiscriminator(4)
    logits, h8 = d(images, map8=True)
    assert logits.shape == (3,) and h8.shape == (3, 16, 8, 8)
    parametrized = [m for m in d.modules() if hasattr(m, "parametrizations")]
    assert len(parametrized) == 3 * 4 + 1  # every conv and the linear layer
    # spectral norm holds the linear layer's largest singular value at 1 (after power steps)
    for _ in range(20):
        d(images)
    assert torch.linalg.matrix_norm(d.fc.weight, ord=2).item() == pytest.approx(1, abs=0.05)
    plain = ResNetDiscriminator(4, sn=False)
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_gan_loop_label_conditioning_reaches_both_players():
    from gan_loop import DCGANDiscriminator, DCGANGenerator, UncondDiscriminator, UncondGenerator

    torch.manual_seed(0)
    z, y = torch.randn(4, 100), torch.tensor([0, 1, 2, 3])
    for g in (UncondGenerator(4, classes=8), DCGANGenerator(4, classes=8)):
        g.eval()
        a, b = g(z, y), g(z, (y + 1) % 8)
        assert a.shape == (4, 3, 64, 64) and (a - b).abs().max() > 1e-4  # the label is read
    for d in (UncondDiscriminator(4, classes=8), DCGANDiscriminator(4, classes=8)):
        images = torch.randn(4, 3, 64, 64)
        assert torch.equal(d(images, y), d(images, (y + 1) % 8))  # projection starts at zero
        torch.nn.init.normal_(d.embed.weight)
        assert not torch.allclose(d(images, y), d(images, (y + 1) % 8))


def test_gan_loop_feature_critic_trains_its_head_only():
    from gan_loop import FeatureCritic

    critic = FeatureCritic(str(BUNDLED)).train()
    assert not critic.encoder.training and critic.head.training  # the encoder stays frozen
    images = torch.rand(4, 3, 64, 64, requires_grad=True) * 2 - 1
    images.retain_grad()
    critic(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # reaches the generator
    assert all(p.grad is None for p in critic.encoder.parameters())
    assert all(p.grad is not None for p in critic.head.parameters())
    assert critic(torch.zeros(2, 3, 32, 32)).shape == (2,)  # other sizes are resized


def test_standing_stats_measures_batchnorm_again_for_the_saved_weights(tmp_path):
    import shutil

    from standing_stats import standing_statistics, training_captions

    from attngan.pipeline import Pipeline

    model = tmp_path / "model"
    shutil.copytree(BUNDLED, model)
    pipe = Pipeline.from_pretrained(model)
    norms = [m for m in pipe.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_var.clone() for m in norms]
    seen = {id(m): [] for m in norms}  # each batch's own variance, as training mode uses it
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out: seen[id(mod)].append(inp[0].var((0, 2, 3), unbiased=True))
        )
        for m in norms
    ]
    captions = ["a big red heart in the top left corner", "a small blue star on the right"]
    g = standing_statistics(pipe, captions, batches=3, batch_size=6)
    for h in hooks:
        h.remove()
    assert not g.training and all(m.momentum == 0.1 for m in norms)
    for m, old in zip(norms, before, strict=True):
        mean_var = torch.stack(seen[id(m)]).mean(0)
        assert len(seen[id(m)]) == 3
        assert torch.allclose(m.running_var, mean_var, rtol=1e-4, atol=1e-6)  # a plain average
        assert not torch.allclose(m.running_var, old)  # not the saved statistics
    with pytest.raises(AttnGANError, match="batches"):
        standing_statistics(pipe, captions, batches=0)
    with pytest.raises(AttnGANError, match="metadata"):
        training_captions(tmp_path)


def test_standing_stats_script_errors_in_one_line_and_keeps_the_model(tmp_path, monkeypatch):
    import shutil

    import standing_stats

    model = tmp_path / "model"
    shutil.copytree(BUNDLED, model)
    weights = (model / "generator.safetensors").read_bytes()
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "metadata.jsonl").write_text('{"text": ["a big red heart"]}\n')
    for argv, message in (
        ([str(model), str(model)], "OUT must be another folder than MODEL"),
        ([str(tmp_path / "nowhere"), str(tmp_path / "out")], "nowhere"),
        ([str(model), str(tmp_path / "out"), "--data", str(tmp_path)], "metadata.jsonl not found"),
        ([str(model), str(tmp_path / "out"), "--data", str(data), "--batches", "0"], "at least 1"),
    ):
        monkeypatch.setattr("sys.argv", ["standing_stats.py", *argv])
        with pytest.raises(SystemExit, match=f"standing_stats: error: .*{message}"):
            standing_stats.main()
    assert (model / "generator.safetensors").read_bytes() == weights
    assert not (tmp_path / "out").exists()


def test_gan_loop_standing_copy_measures_its_own_statistics():
    from gan_loop import UncondGenerator, standing_copy

    g = UncondGenerator(4).eval()
    norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in norms]
    copy = standing_copy(g, batches=2, batch=3, classes=0, dev="cpu")
    assert not copy.training and copy is not g
    fresh = [m for m in copy.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.num_batches_tracked.item() == 2 for m in fresh)
    assert all(torch.equal(m.running_mean, b) for m, b in zip(norms, before, strict=True))
    assert any(not torch.allclose(m.running_mean, b) for m, b in zip(fresh, before, strict=True))


def test_gan_loop_generator_switches_coordconv_and_pixelnorm():
    from gan_loop import CoordConv2d, PixelNorm, UncondGenerator, add_coords, replace_batchnorm

    torch.manual_seed(0)
    g = UncondGenerator(4).eval()
    coord = add_coords(copy.deepcopy(g)).eval()
    convs = [m for m in coord.modules() if isinstance(m, CoordConv2d)]
    assert convs and all(c.conv.in_channels >= 3 for c in convs)
    z = torch.randn(3, 100)
    torch.manual_seed(1)
    before = g(z)
    torch.manual_seed(1)
    assert torch.equal(before, coord(z))  # it starts as the plain generator
    with torch.no_grad():  # ... and can read where it is: a uniform input, different outputs
        conv = convs[-1].conv
        conv.weight[:, -2:] = 1.0
        x = torch.ones(1, conv.in_channels - 2, 8, 8)
        out = convs[-1](x)
        assert not torch.allclose(out[..., 1:-1, 2], out[..., 1:-1, 5])
    # pixel norm: no batch statistics, so a sample is drawn the same alone or in a batch
    pixel = replace_batchnorm(UncondGenerator(4), "pixel").train()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in pixel.modules())
    assert any(isinstance(m, PixelNorm) for m in pixel.modules())
    code = torch.randn(2, 200)
    assert torch.allclose(pixel.net.stages[0](code)[:1], pixel.net.stages[0](code[:1]), atol=1e-5)
    stage = UncondGenerator(4).train().net.stages[0]  # the control: BatchNorm couples the batch
    other = torch.cat([code[:1], -code[1:]])
    assert not torch.allclose(stage(code)[:1], stage(other)[:1], atol=1e-3)
    none = replace_batchnorm(UncondGenerator(4), "none")
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in none.modules())


def _scene(x: int, y: int, side: int = 8) -> torch.Tensor:
    """A grey 64 px image in [-1, 1] with one red square of ``side`` px at (x, y) (top left)."""
    image = torch.zeros(3, 64, 64)
    image[0, y : y + side, x : x + side] = 0.9
    image[1:, y : y + side, x : x + side] = -0.8
    return image


def test_object_placement_finds_objects_cut_by_the_border_and_their_outward_shift():
    from object_placement import cell_group, placement

    inside = torch.stack([_scene(4, 4), _scene(28, 28)])  # corner object inside; centre one
    cut = torch.stack([_scene(0, 0), _scene(28, 28)])  # the corner object against the border
    centres = np.array([[8.0, 8.0], [32.0, 32.0]])
    a, b = placement(inside, centres), placement(cut, centres)
    assert a["frame"] == 0 and a["touch"] == 0 and a["empty"] == 0
    assert b["frame"] > 0.1 and b["touch"] == 0.5
    # only the corner object is off the middle cell; drawn 4 px further out in both axes
    assert a["radius"] == pytest.approx(a["true"]) == pytest.approx(np.hypot(24, 24))
    assert b["radius"] == pytest.approx(np.hypot(28, 28)) and b["true"] == a["true"]
    assert a["off"] == 0 and b["off"] == pytest.approx(np.hypot(4, 4) / 2)
    # shifted by an unknown offset: no distance to the true centres
    assert "off" not in placement(cut, centres, aligned=False)
    grey = torch.zeros(2, 3, 64, 64)
    assert placement(grey, centres)["empty"] == 1  # neutral pixels are never an object
    assert [cell_group(p) for p in ("center", "top", "left", "bottom right")] == [
        "centre",
        "edge",
        "edge",
        "corner",
    ]


def test_object_placement_reads_single_object_scenes_or_errors(tmp_path):
    from object_placement import single_object_rows

    with pytest.raises(AttnGANError, match="not found"):
        single_object_rows(tmp_path, 5)
    (tmp_path / "test").mkdir()
    one = {"file_name": "a.png", "objects": [{"position": "top"}]}
    two = {"file_name": "b.png", "objects": [{"position": "top"}, {"position": "left"}]}
    lines = [json.dumps(r) for r in (two, one, one, two, one)]
    (tmp_path / "test" / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    assert len(single_object_rows(tmp_path, 2)) == 2
    assert len(single_object_rows(tmp_path, 10)) == 3
    (tmp_path / "test" / "metadata.jsonl").write_text(json.dumps(two) + "\n")
    with pytest.raises(AttnGANError, match="no single-object"):
        single_object_rows(tmp_path, 5)


def test_object_placement_ceiling_scores_the_training_crops_below_the_real_images(tmp_path):
    """The semantic scores a perfect model of the training images would get: every attribute of
    the real test images is read, the random crops (objects enlarged, shifted, cut) lose shape."""
    from object_placement import ceiling

    from attngan.data.shapes import build_shapes
    from attngan.evaluation.shapes_classifier import load_shapes_classifier

    root = tmp_path / "shapes"
    build_shapes(root, num_train=2, num_test=80, workers=1, progress=False)
    scores = ceiling(root, load_shapes_classifier())
    real, crops = scores["real test images"], scores["the same, training crops"]
    assert real["images"] == crops["images"] == 80
    assert min(real[a] for a in ("colour", "shape", "size", "position")) >= 0.95
    assert crops["shape"] < real["shape"] - 0.2
    # per cell group, on the real test images: every shape and place read; a blank image, none
    from object_placement import by_group, single_object_rows

    from attngan.data.transforms import PyramidTransform

    rows = single_object_rows(root, 80)
    view = PyramidTransform([64], train=False)
    images = torch.stack([view(Image.open(root / "test" / r["file_name"]).convert("RGB"))[-1]
                          for r in rows])  # fmt: skip
    classifier = load_shapes_classifier()
    for attribute in ("shape", "position"):
        groups = by_group(classifier, images, rows, attribute)
        assert all(v >= 0.9 for v in groups.values() if v == v)  # nan: no object in that group
    blank = by_group(classifier, torch.zeros_like(images), rows, "shape")
    assert all(v <= 0.5 for v in blank.values() if v == v)
    with pytest.raises(AttnGANError, match="no images"):
        (tmp_path / "empty" / "test").mkdir(parents=True)
        (tmp_path / "empty" / "train").mkdir(parents=True)
        for split in ("train", "test"):
            (tmp_path / "empty" / split / "metadata.jsonl").write_text("")
        ceiling(tmp_path / "empty", load_shapes_classifier())


def test_damsm_position_probe_reads_the_cell_and_follows_a_mirrored_image(tmp_path):
    """``damsm_attributes.py --positions`` on the bundled encoders: real single-object images
    pick their own cell's caption; mirrored left to right, a left object picks "right"."""
    from damsm_attributes import position_choices, position_phrase

    from attngan.checkpoints import load_model
    from attngan.data.shapes import build_shapes
    from attngan.data.transforms import PyramidTransform

    assert [position_phrase(p) for p in ("center", "top", "left", "bottom right")] == [
        "in the center",
        "at the top",
        "on the left",
        "in the bottom right",
    ]
    root = tmp_path / "shapes"
    build_shapes(root, num_train=2, num_test=120, workers=1, progress=False)
    from object_placement import single_object_rows

    rows = single_object_rows(root, 200)
    view = PyramidTransform([64], train=False)
    images = torch.stack([view(Image.open(root / "test" / r["file_name"]).convert("RGB"))[-1]
                          for r in rows])  # fmt: skip
    model = load_model(BUNDLED, components=("text_encoder", "image_encoder"))
    objects = [r["objects"][0] for r in rows]
    chosen = position_choices(model, images, objects)
    right = sum(chosen[p][p] for p in chosen) / len(rows)
    assert right >= 0.9
    mirrored = position_choices(model, images.flip(-1), objects)
    lefts = sum(mirrored["left"].values())
    assert lefts and mirrored["left"]["right"] / lefts >= 0.8


@pytest.mark.parametrize("positions", [False, True])
def test_damsm_attributes_corrupt_image_is_one_line(tmp_path, monkeypatch, capsys, positions):
    """A corrupt test image (or a missing metadata file) ends ``damsm_attributes.py`` with one
    ``error:`` line, not a traceback, in both of its probes."""
    import damsm_attributes

    from attngan.data.shapes import build_shapes

    root = tmp_path / "shapes"
    build_shapes(root, num_train=2, num_test=6, workers=1, progress=False)
    rows = [json.loads(line) for line in (root / "test" / "metadata.jsonl").open()]
    single = next(r for r in rows if len(r["objects"]) == 1)
    (root / "test" / single["file_name"]).write_bytes(b"not a png")
    argv = ["damsm_attributes.py", "--model", str(BUNDLED), "--data", str(root)]
    monkeypatch.setattr(sys, "argv", argv + ["--positions"] * positions)
    with pytest.raises(SystemExit, match=r"^damsm_attributes: error: .*") as info:
        damsm_attributes.main()
    assert "\n" not in str(info.value) and single["file_name"].split("/")[-1] in str(info.value)
    monkeypatch.setattr(sys, "argv", argv[:3] + ["--data", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="not found"):
        damsm_attributes.main()


def test_damsm_position_landscape_peaks_at_the_true_place(tmp_path, monkeypatch, capsys):
    """``damsm_attributes.py --landscape``: centre objects score highest with their own captions
    where they are, lower a cell away on either side; unmoved, the scores of a rolled-back image
    are the unmoved image's; a split without centre scenes is one error line."""
    import damsm_attributes
    from damsm_attributes import load_views, position_landscape

    from attngan.checkpoints import load_model
    from attngan.data.shapes import build_shapes

    root = tmp_path / "shapes"
    build_shapes(root, num_train=2, num_test=160, workers=1, progress=False)
    rows = [json.loads(line) for line in (root / "test" / "metadata.jsonl").open()]
    centre = [r for r in rows if len(r["objects"]) == 1 and r["objects"][0]["position"] == "center"]
    assert len(centre) >= 3
    model = load_model(BUNDLED, components=("text_encoder", "image_encoder"))
    images = load_views(root / "test", centre, 64)
    scores = position_landscape(model, images, [r["text"] for r in centre], (-21, -3, 0, 3, 21))
    assert list(scores) == [-21, -3, 0, 3, 21]
    assert scores[0] > max(scores[-21], scores[21]) + 0.1
    full = position_landscape(model, images, [r["text"] for r in centre], (0, 64))
    assert full[0] == pytest.approx(full[64], abs=1e-5)  # a whole turn is the image itself
    argv = ["damsm_attributes.py", "--model", str(BUNDLED), "--data", str(root), "--landscape"]
    monkeypatch.setattr(sys, "argv", argv)
    damsm_attributes.main()
    out = capsys.readouterr().out
    assert f"{len(centre)} centre-cell test images" in out and "+0:" in out and "-24:" in out
    kept = [r for r in rows if r not in centre]
    (root / "test" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    with pytest.raises(SystemExit, match="no single-object scene in the centre cell"):
        damsm_attributes.main()


def test_critic_preference_scores_real_images_above_their_moved_copies(
    tmp_path, monkeypatch, capsys
):
    """``critic_preference.py``: the bundled encoders score real centre scenes above the same
    scenes moved a cell sideways; rolling by whole turns changes nothing; a tiny GAN checkpoint
    adds both heads of each discriminator; a DAMSM model in its place is one error line."""
    import critic_preference
    from critic_preference import critic_scores, moved
    from damsm_attributes import load_views

    from attngan.checkpoints import load_model
    from attngan.data.shapes import build_shapes

    root = tmp_path / "shapes"
    build_shapes(root, num_train=24, num_test=160, workers=1, progress=False)
    rows = [json.loads(line) for line in (root / "test" / "metadata.jsonl").open()]
    centre = [r for r in rows if len(r["objects"]) == 1 and r["objects"][0]["position"] == "center"]
    captions = [r["text"][0] for r in centre]
    real = [load_views(root / "test", centre, 64)]
    assert torch.equal(moved(real, 3)[0], real[0]) and not torch.equal(moved(real, 1)[0], real[0])
    encoders = load_model(BUNDLED, components=("text_encoder", "image_encoder"))
    here, away = (
        critic_scores(encoders, real, captions),
        critic_scores(encoders, moved(real, 1), captions),
    )
    assert set(here) == {"damsm cos", "damsm word"}  # no discriminators in a model folder
    assert here["damsm cos"] > away["damsm cos"] + 0.1 and here["damsm word"] > away["damsm word"]
    # end to end on a tiny GAN checkpoint
    from attngan.config import load_config
    from attngan.training import train_damsm, train_gan

    tiny = [
        f"data.root={root}", "model.base_size=16", "model.gf=4", "model.df=4",
        "model.embedding_dim=16", "model.word_dim=8", "model.cnn_channels=4", "model.z_dim=8",
        "model.condition_dim=8", "damsm.batch_size=4", "train.batch_size=4", "data.workers=0",
        "damsm.max_steps=1", "train.max_steps=1", "train.sample_every=1000",
    ]  # fmt: skip
    damsm = train_damsm(load_config("shapes", tiny), runs=tmp_path / "d", device="cpu",
                        progress=False).run_dir  # fmt: skip
    gan = train_gan(load_config("shapes", tiny), damsm=damsm, runs=tmp_path / "g", device="cpu",
                    progress=False).run_dir  # fmt: skip
    checkpoint = sorted((gan / "checkpoints").iterdir())[-1]
    argv = ["critic_preference.py", str(checkpoint), "--data", str(root), "--move", "-1"]
    monkeypatch.setattr(sys, "argv", argv)
    critic_preference.main()
    text = capsys.readouterr().out
    assert f"{len(centre)} single-object test scenes in the center cell" in text
    for column in ("D16 cond", "D16 uncond", "D32 cond", "D32 uncond", "damsm cos"):
        assert column in text
    assert "| generated, moved -1 cell |" in text and "| real, moved -1 cell |" in text
    argv = ["critic_preference.py", str(damsm / "model"), "--data", str(root)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="^critic_preference: error: "):
        critic_preference.main()


def test_object_placement_drawn_cells_follow_the_objects(tmp_path):
    """``drawn_cells``: real single-object scenes are drawn in their own cells; moved a cell to
    the right (rolled), in the next cell; blank images have no object ("none")."""
    from damsm_attributes import load_views
    from object_placement import drawn_cells, single_object_rows

    from attngan.data.shapes import build_shapes

    root = tmp_path / "shapes"
    build_shapes(root, num_train=2, num_test=80, workers=1, progress=False)
    rows = single_object_rows(root, 80)
    images = load_views(root / "test", rows, 64)
    drawn = drawn_cells(images, rows)
    assert sum(sum(c.values()) for c in drawn.values()) == len(rows)
    assert all(set(counts) <= {cell} for cell, counts in drawn.items())
    moved = drawn_cells(images.roll(21, dims=3), rows)
    assert set(moved["left"]) <= {"center"} and set(moved["top left"]) <= {"top"}
    assert set(moved["center"]) <= {"right"}
    blank = drawn_cells(torch.zeros_like(images), rows)
    assert all(set(counts) <= {"none"} for counts in blank.values())


def test_caption_rows_draws_one_row_per_model(tmp_path, monkeypatch):
    """``caption_rows.py``: a row per model, a column per caption, each image enlarged; a model
    that is not there is one error line."""
    import caption_rows

    images = caption_rows.caption_rows([str(BUNDLED)] * 2, ["a red circle", "a blue star"], 2)
    assert images.shape == (4, 3, 128, 128) and images.min() >= 0 and images.max() <= 1
    assert torch.equal(images[0], images[2])  # the same model, caption and seed
    assert torch.equal(
        images[:, :, ::2, ::2].repeat_interleave(2, 2).repeat_interleave(2, 3), images
    )
    out = tmp_path / "rows.png"
    monkeypatch.setattr(sys, "argv", ["caption_rows.py", str(out), str(BUNDLED), "--scale", "1"])
    caption_rows.main()
    assert Image.open(out).size == (8 * 64 + 9 * 2, 64 + 2 * 2)  # 8 default captions, padding 2
    assert len(caption_rows.default_captions("on the left")) == 8
    monkeypatch.setattr(sys, "argv", ["caption_rows.py", str(out), str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="^caption_rows: error: "):
        caption_rows.main()


def test_d_shape_probe_reads_a_runs_feature_critic_beside_its_discriminators(tmp_path):
    from d_shape_probe import probe as shape_probe

    from attngan.config import load_config
    from attngan.data.shapes import build_shapes
    from attngan.training import train_damsm, train_gan

    root = tmp_path / "shapes"
    build_shapes(root, num_train=8, num_test=4, image_size=32, workers=1, progress=False)
    tiny = [
        "model.base_size=16", "model.gf=4", "model.df=4", "model.embedding_dim=16",
        "model.word_dim=8", "model.cnn_channels=4", "model.z_dim=8", "model.condition_dim=8",
        "damsm.batch_size=4", "train.batch_size=4", "data.workers=0", "damsm.max_steps=1",
        "train.max_steps=1", "train.checkpoint_every=1", f"data.root={root}",
    ]  # fmt: skip
    damsm = train_damsm(load_config("shapes", tiny), runs=tmp_path / "d", device="cpu",
                        progress=False)  # fmt: skip
    lines = {}
    for name, more in (("plain", []), ("critic", ["train.feature_critic=1"]),
                       ("contrast", ["train.d_contrastive=1"])):  # fmt: skip
        run = train_gan(load_config("shapes", [*tiny, *more]), damsm=damsm.run_dir,
                        runs=tmp_path / name, device="cpu", progress=False)  # fmt: skip
        checkpoint = run.run_dir / "checkpoints" / "step-00000001"
        lines[name] = shape_probe(str(checkpoint), count=6, seed=0)
    heads = lambda rows: {row.split()[1] for row in rows}  # noqa: E731
    assert heads(lines["plain"]) == {"D16", "D32"}
    assert heads(lines["critic"]) == {"D16", "D32", "F32"}
    assert len(lines["critic"]) == len(lines["plain"]) + 3  # its two heads and its caption check
    contrast = [row for row in lines["contrast"] if " contrastive " in row]  # one per stage
    assert [row.split()[1] for row in contrast] == ["D16", "D32"]
    for row in contrast:
        shares = [float(x) for x in re.findall(r"([0-9.]+)%", row)]
        assert len(shares) == 3 and all(0 <= x <= 100 for x in shares)


def test_gan_loop_adversarial_examples_move_the_discriminator_s_verdict():
    from gan_loop import UncondDiscriminator, adversarial

    torch.manual_seed(0)
    d = UncondDiscriminator(8).eval()
    x = torch.rand(6, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        base = d(x)
        up, down = d(adversarial(d, x, None, 1.0, 0.05)), d(adversarial(d, x, None, -1.0, 0.05))
    assert (up > base).all() and (down < base).all()
    moved = adversarial(d, x, None, 1.0, 0.05)
    assert (moved - x).abs().max() <= 0.05 + 1e-6 and moved.abs().max() <= 1
    assert all(p.requires_grad for p in d.parameters())  # the discriminator still learns


def test_critic_gradients_follows_the_damsm_from_blob_twins(tmp_path):
    import argparse

    from critic_gradients import make_parser, read_shapes, run, single_objects

    from attngan.data.shapes import SHAPES
    from attngan.evaluation.shapes_classifier import load_shapes_classifier

    sharp, blob, records = single_objects(4)
    assert sharp.shape == blob.shape == (4, 3, 64, 64) and len(records) == 4
    assert all(len(r["objects"]) == 1 for r in records)
    targets = torch.tensor([SHAPES.index(r["objects"][0]["shape"]) for r in records])
    classifier = load_shapes_classifier(None).eval()
    assert read_shapes(classifier, sharp, targets)[0] == 1.0  # real shapes read right
    assert read_shapes(classifier, sharp, (targets + 1) % 8)[0] == 0.0
    args = make_parser().parse_args(["--scenes", "4", "--steps", "4", "--every", "2",
                                     "--noise", "0", "0.1", "--out", str(tmp_path)])  # fmt: skip
    rows = run(args)
    assert [(r["noise"], r["step"]) for r in rows] == [(0, 2), (0, 4), (0.1, 2), (0.1, 4)]
    assert all(0 < r["moved"] < 0.2 and 0 <= r["right"] <= 1 for r in rows)
    assert (tmp_path / "damsm-noise0.1.png").is_file()
    with pytest.raises(AttnGANError, match="needs --checkpoint"):
        run(argparse.Namespace(**{**vars(args), "critic": "d", "checkpoint": None}))
    with pytest.raises(AttnGANError, match="has no feature critic"):
        run(argparse.Namespace(**{**vars(args), "critic": "f", "checkpoint": str(tmp_path)}))


def test_gan_loop_held_out_reads_the_discriminator_s_overfitting(tmp_path):
    from gan_loop import make_parser, run

    from attngan.data.shapes import build_shapes

    root, other = tmp_path / "shapes", tmp_path / "other"
    build_shapes(root, num_train=24, num_test=2, image_size=64, workers=1, progress=False)
    build_shapes(other, num_train=24, num_test=2, image_size=64, workers=1, progress=False,
                 seed=1)  # fmt: skip
    small = ["--data", str(root), "--steps", "4", "--every", "2", "--batch", "4", "--gf", "4",
             "--df", "4"]  # fmt: skip

    def rows(*extra: str) -> list[dict]:
        return run(make_parser().parse_args([str(tmp_path / "out"), *small, *extra]))

    plain = rows()
    grid = (tmp_path / "out" / "step-00004.png").read_bytes()  # the last samples
    # its own training images as the held-out set: the same images, the same verdict
    same = rows("--held-out", str(root))
    assert all(row["d_gap"] == pytest.approx(0, abs=1e-5) for row in same)
    # other images: another verdict, and the reading leaves the game itself as it was
    unseen = rows("--held-out", str(other))
    assert unseen[-1]["d_gap"] != pytest.approx(0, abs=1e-4)
    assert unseen[-1]["d_train"] == pytest.approx(same[-1]["d_train"], rel=1e-5)
    assert (tmp_path / "out" / "step-00004.png").read_bytes() == grid
    assert [row["objects"] for row in unseen] == [row["objects"] for row in plain]
    # with labels, the projection term reads each held-out image's own shape
    labelled = rows("--simple", "--labels", "--d-blur", "1", "--held-out", str(other))
    assert {"d_train", "d_held", "d_gap"} <= set(labelled[-1])
    with pytest.raises(AttnGANError, match="--held-out folder not found"):
        rows("--held-out", str(tmp_path / "missing"))
