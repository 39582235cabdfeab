"""Data-parallel training under ``torchrun`` (one process per device), and nothing without it.

``torchrun --nproc_per_node=N -m attngan train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` then joins the process group (NCCL on CUDA, gloo on the CPU). A plain
``attngan train`` has no such variables and runs as a world of one, where every helper here is the
identity.

Samples are coupled across the batch in two places, so that N processes at batch b take the same
step as one process at batch N*b:

- the DAMSM losses match every caption against every image of the *global* batch: features are
  gathered with :func:`gather` (gradients flow back to the rank that made them);
- BatchNorm statistics, with ``train.sync_batchnorm``: :func:`convert_sync_batchnorm` (PyTorch's
  ``SyncBatchNorm`` on CUDA, :class:`SyncBatchNormCPU` elsewhere, which PyTorch's does not serve).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from attngan.errors import TrainingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes the run folder, logs, samples and checkpoints."""
        return self.rank == 0


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) with several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> World:
    """Join the process group torchrun describes (once per process); a world of one otherwise.
    On CUDA each rank takes the GPU ``LOCAL_RANK``."""
    if not launched():
        return World()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    world = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise TrainingError(
                f"LOCAL_RANK {world.local_rank} but only {torch.cuda.device_count()} GPUs: "
                "use --nproc_per_node <= the number of GPUs"
            )
        torch.cuda.set_device(world.local_rank)
    return world


def device_for(device: torch.device, world: World) -> torch.device:
    """Each rank's own GPU; the CPU is shared."""
    if device.type == "cuda" and world.size > 1:
        return torch.device("cuda", world.local_rank)
    return device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 in a world of one)."""
    return dist.get_rank() if active() else 0


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank (e.g. the run folder it created)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is True on any (so all ranks stop at the same step)."""
    if not active():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Logged losses averaged over ranks (one small all-reduce)."""
    if not active() or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / dist.get_world_size()).tolist(), strict=True))


class _Gather(torch.autograd.Function):
    """All ranks' ``x`` concatenated along dim 0. Backward: the gradient of the concatenation is
    summed over ranks (each rank's loss may use every rank's rows) and each rank keeps its slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows, ctx.rank = x.size(0), dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather(x: Tensor) -> Tensor:
    """``[b, ...]`` on each rank -> ``[world*b, ...]``, rank order; differentiable. Every rank must
    pass the same shape (torchrun ranks take equal batches)."""
    if not active():
        return x
    return _Gather.apply(x)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad)  # through autograd: differentiable again (R1)


class SyncBatchNormCPU(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (1-D or 2-D) over the global batch for backends PyTorch's ``SyncBatchNorm`` does
    not serve (gloo on the CPU), and for CUDA when a second derivative is needed (R1), which
    PyTorch's lacks: per-channel sums and sums of squares are all-reduced, differentiably (to
    any order)."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (2, 3, 4):
            raise ValueError(f"expected a 2-D, 3-D or 4-D input (got {x.dim()}-D)")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and active()):
            return super().forward(x)
        channels = x.size(1)
        dims = [0, *range(2, x.dim())]
        count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = _AllReduceSum.apply(stats)
        n = stats[-1]
        mean = stats[:channels] / n
        var = (stats[channels : 2 * channels] / n - mean * mean).clamp(min=0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), m)
                self.num_batches_tracked += 1
        shape = (1, channels) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _to_cpu_sync(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, SyncBatchNormCPU
    ):
        new = SyncBatchNormCPU(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        new.requires_grad_(any(p.requires_grad for p in module.parameters()))
        return new
    for name, child in module.named_children():
        setattr(module, name, _to_cpu_sync(child))
    return module


def convert_sync_batchnorm(
    module: nn.Module, device: torch.device, double_backward: bool = False
) -> nn.Module:
    """Every BatchNorm of ``module`` normalised over the global batch (a no-op in a world of
    one). ``double_backward``: the layers must be twice differentiable (a gradient penalty),
    which PyTorch's CUDA ``SyncBatchNorm`` is not, so :class:`SyncBatchNormCPU` serves there too.
    """
    if not active():
        return module
    if device.type == "cuda" and not double_backward:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_cpu_sync(module)


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel`` in a world of several, else ``module`` itself."""
    if not active():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


__all__ = [
    "World", "any_rank", "barrier", "broadcast_object", "convert_sync_batchnorm", "gather",
    "launched", "mean_over_ranks", "rank", "setup", "shutdown", "wrap",
]  # fmt: skip
