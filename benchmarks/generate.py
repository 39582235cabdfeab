"""Time generation at the birds config (256 px, 3 stages, gf 32, 18-word captions) against the code
of a baseline commit (default a65b752, before the inference copy), side by side in one run.

    python benchmarks/generate.py [--baseline a65b752] [--threads 2] [--batches 1 16] [--rounds 5]
    python benchmarks/generate.py --quick       # a dry run: one short round at batches 1 and 2
    python benchmarks/generate.py --profile     # also torch.profiler tables of one batch-1 call

The baseline's ``src/attngan`` comes out of git (``git archive``) into a temporary folder; two
worker processes, one importing that copy and one this checkout's ``src``, build the same networks
(random weights, BatchNorm statistics like a trained model's, shared through a file) and take
turns: every round times each variant of both once, in an order that reverses every round, so
both codes run under the same load. Variants, at each batch size b (b images of one caption):

- ``call``: the plain path: the text encoder and the eval-mode generator under ``torch.no_grad``;
- ``pipeline``: ``Pipeline(...)(caption, num_images=b, batch_size=b)``, everything a user calls;
- ``fast_call`` (this checkout): the text encoder and the pipeline's inference copy.

Every figure is the median over rounds of images/s, and its ratio to the baseline's ``call`` at
the same batch (the median of the per-round ratios). The workers also report the page faults
(``getrusage`` minor faults) and the kernel time per image. Before timing, every variant's
images are checked against the baseline's plain call (and the two pipelines against each other).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, WorkerProcess, extract, serve  # noqa: E402

STEPS = 18  # words per caption (the birds config's data.max_words)
TOLERANCE = {"cpu": 1e-4, "cuda": 2e-2}  # max |difference| of images in [-1, 1]; CUDA uses TF32


# --- the worker: one code version, driven over stdin/stdout ------------------------------------


class Worker:
    """The networks of one code version and its variants, built by ``setup``."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.timed: dict[tuple[str, int], object] = {}  # the functions timed, warmed up

    def setup(self, weights: str, create: bool) -> dict:
        from common import VOCAB_SIZE, preset_config

        import attngan
        from attngan.checkpoints import build_component
        from attngan.pipeline import Pipeline
        from attngan.text import Vocabulary

        torch = self.torch
        self.config = config = preset_config(Path("."))
        torch.manual_seed(0)
        generator = build_component("generator", config, VOCAB_SIZE, initialize=create)
        text_encoder = build_component("text_encoder", config, VOCAB_SIZE)
        if create:
            with torch.no_grad():  # BatchNorm statistics like a trained model's, not 0 and 1
                for m in generator.modules():
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                        m.running_mean.normal_(0, 0.2)
                        m.running_var.uniform_(0.5, 1.5)
            state = {"generator": generator.state_dict(), "text_encoder": text_encoder.state_dict()}
            torch.save(state, weights)
        state = torch.load(weights)
        generator.load_state_dict(state["generator"])
        text_encoder.load_state_dict(state["text_encoder"])
        self.generator = generator.to(self.device).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        vocab = Vocabulary.build([[f"w{i}" for i in range(VOCAB_SIZE - 1)]])
        self.pipe = Pipeline(generator, text_encoder, vocab, self.config, self.device)
        self.variants = ["call", "pipeline"]
        if hasattr(self.pipe, "clear_cache"):  # this checkout: the cached inference copy
            self.variants.append("fast_call")
        gen = torch.Generator().manual_seed(0)
        words = torch.randint(1, VOCAB_SIZE - 1, (STEPS,), generator=gen).tolist()
        self.caption = " ".join(f"w{i}" for i in words)
        return {"source": str(Path(attngan.__file__).parent), "variants": self.variants,
                "threads": torch.get_num_threads()}  # fmt: skip

    def _inputs(self, batch: int):
        torch = self.torch
        gen = torch.Generator().manual_seed(batch)
        z = torch.randn(batch, self.config.model.z_dim, generator=gen).to(self.device)
        ca = torch.randn(batch, self.config.model.condition_dim, generator=gen).to(self.device)
        ids = self.pipe.encode(self.caption)[0].ids
        tokens = torch.tensor([ids] * batch, device=self.device)
        lengths = torch.full((batch,), len(ids), device=self.device)
        return tokens, lengths, z, ca

    def make(self, variant: str, batch: int):
        """A function making the batch's last-stage images with ``variant``."""
        torch = self.torch
        tokens, lengths, z, ca = self._inputs(batch)
        if variant == "pipeline":
            return lambda: self.pipe(self.caption, num_images=batch, batch_size=batch).images[-1]
        if variant == "call":
            generator, mode = self.generator, torch.no_grad
        else:
            generator, mode = self.pipe.inference_generator(), torch.inference_mode

        def run():
            with mode():
                text = self.text_encoder(tokens, lengths)
                out = generator(z, text.sentence, text.words, text.mask, ca_noise=ca)
                return out.images[-1].float().cpu()

        return run

    def check(self, batch: int, path: str) -> dict:
        self.torch.save({v: self.make(v, batch)() for v in self.variants}, path)
        return {}

    def time(self, variant: str, batch: int, calls: int) -> dict:
        if (variant, batch) not in self.timed:
            self.timed[variant, batch] = self.make(variant, batch)
            self.timed[variant, batch]()  # warm-up (the pipeline's first call makes its copy)
        fn = self.timed[variant, batch]
        self._sync()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        self._sync()
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        images = calls * batch
        return {"seconds": seconds / images, "faults": (after.ru_minflt - usage.ru_minflt) / images,
                "sys": (after.ru_stime - usage.ru_stime) / images}  # fmt: skip

    def flops(self, batch: int) -> dict:
        from common import count_flops, matmul_peak

        return {"flops": count_flops(self.make("call", batch)) / batch,
                "peak": matmul_peak(self.device)}  # fmt: skip

    def profile(self, variant: str, batch: int) -> dict:
        from torch.profiler import ProfilerActivity, profile

        fn = self.make(variant, batch)
        fn()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            fn()
        table = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=28,
            max_shapes_column_width=60,
        )  # fmt: skip
        return {"table": table}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


def worker_main(src: str, device: str, threads: int) -> None:
    serve(partial(Worker, device), src, threads)


# --- the driver --------------------------------------------------------------------------------


def start(name: str, src: Path, args: argparse.Namespace) -> WorkerProcess:
    command = [sys.executable, __file__, "--worker", str(src), "--device", args.device,
               "--threads", str(args.threads)]  # fmt: skip
    return WorkerProcess(name, command, args.threads)


def check(workers: dict, batch: int, device: str, folder: Path) -> None:
    import torch

    images = {}
    for name, worker in workers.items():
        path = folder / f"{name}-{batch}.pt"
        worker("check", batch=batch, path=str(path))
        images.update({(name, v): x for v, x in torch.load(path).items()})
    reference = images[("baseline", "call")]
    pairs = [(key, ("baseline", "call")) for key in images if key[1] != "pipeline"]
    pairs.append((("current", "pipeline"), ("baseline", "pipeline")))
    for key, ref in pairs:
        diff = (images[key] - images[ref]).abs().max().item()
        assert diff < TOLERANCE[device], f"{key} differs from {ref} by {diff} at batch {batch}"
    print(f"  batch {batch}: every variant's images match the baseline's (tolerance "
          f"{TOLERANCE[device]}; largest |pixel| {reference.abs().max():.2f})")  # fmt: skip


def measure(workers: dict, batch: int, args: argparse.Namespace) -> None:
    calls = args.calls or max(1, 16 // batch)
    order = [(n, v) for n, w in workers.items() for v in w.variants]
    results: dict[tuple, list[dict]] = {key: [] for key in order}
    for r in range(args.rounds):
        for name, variant in order if r % 2 == 0 else order[::-1]:
            results[name, variant].append(
                workers[name]("time", variant=variant, batch=batch, calls=calls)
            )
    base = results["baseline", "call"]
    print(f"\nbatch {batch} ({calls} calls x {args.rounds} rounds; medians; vs = images/s "
          f"against the baseline's plain call in the same round):")  # fmt: skip
    print(f"  {'code':9} {'variant':10} {'images/s':>9} {'vs call':>8} {'faults/img':>11} "
          f"{'sys ms/img':>10}")  # fmt: skip
    for name, variant in order:
        rows = results[name, variant]
        rate = statistics.median(1 / x["seconds"] for x in rows)
        ratio = statistics.median(
            b["seconds"] / x["seconds"] for b, x in zip(base, rows, strict=True)
        )
        faults = statistics.median(x["faults"] for x in rows)
        kernel = statistics.median(x["sys"] for x in rows) * 1e3
        print(f"  {name:9} {variant:10} {rate:9.2f} {ratio:7.2f}x {faults:11.0f} {kernel:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="a65b752", help="commit to compare with")
    parser.add_argument(
        "--baseline-src", type=Path, help="a src folder holding that commit's attngan (no git)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--calls", type=int, default=0, help="calls per round (default: 16/b)")
    parser.add_argument("--quick", action="store_true", help="dry run: batches 1 2, 1 round")
    parser.add_argument("--profile", action="store_true", help="profile a batch-1 call of each")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args.worker, args.device, args.threads)
    if args.quick:
        args.batches, args.rounds, args.calls = [1, 2], 1, 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        baseline = args.baseline_src or extract(args.baseline, folder / "baseline")
        sources = {"baseline": baseline, "current": ROOT / "src"}
        workers = {name: start(name, src, args) for name, src in sources.items()}
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on `kill` too
        finished = False
        try:
            weights = str(folder / "weights.pt")
            for name in ("current", "baseline"):  # the current code makes the weights
                info = workers[name]("setup", weights=weights, create=name == "current")
                workers[name].variants = info["variants"]
                print(f"{name}: {info['source']} ({', '.join(info['variants'])})")
            cost = workers["current"]("flops", batch=1)
            print(f"generation, birds config (256 px), {args.device}, {info['threads']} threads, "
                  f"{cost['flops'] / 1e9:.1f} GFLOP per image (plain call); float32 matmul peak "
                  f"{cost['peak']:.0f} GFLOP/s; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
            for batch in args.batches:
                check(workers, batch, args.device, folder)
            for batch in args.batches:
                measure(workers, batch, args)
            if args.profile:
                for name, variant in (("baseline", "call"), ("current", "fast_call")):
                    print(f"\n{name} {variant}, batch 1:")
                    print(workers[name]("profile", variant=variant, batch=1)["table"])
            print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
            finished = True
        finally:
            for worker in workers.values():
                worker.close(kill=not finished)


if __name__ == "__main__":
    main()
