"""Data-parallel training across processes (``torchrun --nproc_per_node N -m hashlab train``).

The :class:`~hashlab.train.Trainer` asks :func:`context` for its view of the run. Without
``WORLD_SIZE`` > 1 in the environment (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, set by
torchrun) that view is :class:`SingleProcess`, whose every method is the identity: the
single-process path is the one it always was. Under torchrun it is :class:`DataParallel`:

* one process group per run (gloo for CPU tensors, NCCL for CUDA tensors: the backend
  follows the device of the tensor, ``"cpu:gloo,cuda:nccl"`` when CUDA is present); each
  rank trains on ``cuda:LOCAL_RANK`` when the device is CUDA;
* the network wrapped in ``DistributedDataParallel`` for the training forward pass (gradients
  averaged across ranks); validation, ``state.predict`` and encoding use the bare network,
  whose weights are the same on every rank;
* the epoch's items sharded by rank like ``DistributedSampler``, but over the method's own
  ``epoch_order`` (drawn from the same seed on every rank, so every rank holds the same
  global order): each *global* batch of ``batch_size`` items is split into ``WORLD_SIZE``
  contiguous chunks and rank r trains on chunk r;
* **the loss sees the whole global batch.** :meth:`DataParallel.gather` all-gathers the
  outputs of the other ranks (without gradient) and puts this rank's own outputs, with their
  gradient, in its slot: the pattern of open_clip's ``ClipLoss``. Every rank then computes
  the same loss of the same global batch (``state.batch_indices`` are the global batch's
  items), so pairwise in-batch losses (DCH, DHN, HashNet...), batch-vs-memory losses (DPSH,
  ADSH) and the methods' bookkeeping (DPSH's memory U, ADSH's V) are those of one process
  on the global batch, and stay identical on every rank without further communication.

Why the gradient is exact. Let L be the loss of the global batch and z_r the outputs of
rank r's chunk. The true gradient is sum_r dL/dz_r dz_r/dtheta. Rank r back-propagates
only through its own z_r, so it gets dL/dz_r dz_r/dtheta; DDP *averages* over the N ranks,
giving 1/N of the sum. The gather therefore scales the gradient flowing into the local
slot by N (:class:`_ScaleGrad`, identity forward). A loss term that runs the network itself
(EDDH's symmetric pairing runs it on every training item) is computed whole on every rank,
so DDP's average of N equal gradients is already right, and it is not scaled.

Methods with their own ``training_step`` (the cross-modal ones) are not wrapped in DDP; the
trainer averages their gradients by hand after backward, and a step that wants its batch
split across ranks encodes :func:`local_chunk` of it and calls :func:`gather_chunks` (LBOCMH's
large triplet batches: each rank encodes a part, the loss sees every triplet).

Random state. The global generators stay identical on every rank (same seed, same draws),
because replicated bookkeeping that draws random numbers (ADSH's sample, PC-AEGAN's game
noise) must agree across ranks. What is per item of a rank's chunk, data augmentation and
dropout in the training forward pass, draws from a rank-private stream instead
(:class:`_RankRandom`, seeded from the seed and the rank), so ranks neither repeat each
other's masks nor drift apart when their chunks differ in size. With dropout or augmentation
a run therefore differs from one process (which draws per item of the global batch); the
equivalence test runs without them.

A method whose ``loss`` runs a backward pass of its own (PC-AEGAN's generator step goes
through the hash network) sets ``loss_runs_backward = True``: DDP's reducer would take that
inner backward for the step's, so such a network is not wrapped and its gradients are
averaged by hand after the trainer's backward, as for a custom step.

Rank 0 writes checkpoints, shows progress and validates; the validation score is broadcast so
every rank takes the same best-epoch / early-stopping decision. A tail batch with fewer
items than ranks is skipped (one process skips only a 1-item tail). BatchNorm layers (fine-
tune mode) are converted to ``SyncBatchNorm`` on CUDA so their statistics are the global
batch's; on CPU (gloo) each rank normalises by its own chunk, which makes fine-tuning on CPU
differ slightly from one process.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "DataParallel",
    "DistributedEnv",
    "SingleProcess",
    "context",
    "distributed_env",
    "gather_chunks",
    "gather_with_grad",
    "init_process_group",
    "is_main_process",
    "local_chunk",
    "main_process_first",
]


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int


def distributed_env() -> DistributedEnv | None:
    """This process's place from ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; None alone."""
    raw = {name: os.environ.get(name) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if raw["WORLD_SIZE"] is None:
        return None
    try:
        world = int(raw["WORLD_SIZE"])
        rank = int(raw["RANK"] or 0)
        local = int(raw["LOCAL_RANK"] if raw["LOCAL_RANK"] is not None else rank)
    except ValueError:
        raise ValueError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them), got "
            + ", ".join(f"{k}={v!r}" for k, v in raw.items())
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} must lie in [0, WORLD_SIZE={world})")
    return None if world == 1 else DistributedEnv(rank, world, local)


def init_process_group() -> DistributedEnv | None:
    """Join this launch's process group (once per process); None for a single process."""
    env = distributed_env()
    if env is None:
        return None
    if not dist.is_initialized():
        # one group for both kinds of tensor: gloo carries CPU tensors, NCCL CUDA tensors
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
        atexit.register(_destroy)
    return env


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0 of a launch and in a single process: the one that saves and prints."""
    env = distributed_env()
    return env is None or env.rank == 0


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fills a cache), the others after it is done."""
    env = init_process_group()
    if env is not None and env.rank != 0:
        dist.barrier()
    try:
        yield
    finally:
        if env is not None and env.rank == 0:
            dist.barrier()


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; gradient times ``factor`` backward."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def chunk_sizes(n_items: int, world_size: int) -> list[int]:
    """Sizes of the contiguous per-rank chunks of a global batch (``np.array_split``'s)."""
    base, extra = divmod(n_items, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


def gather_with_grad(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All ranks' rows in rank order; this rank's rows keep their gradient (scaled by N).

    ``sizes`` are every rank's row counts (the same list on every rank). The N factor makes
    DDP's average of the ranks' gradients equal the gradient of one process on all rows (see
    the module docstring). Call only under an initialised process group.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    if local.shape[0] != sizes[rank]:
        raise ValueError(f"rank {rank} has {local.shape[0]} rows, sizes say {sizes[rank]}")
    width = max(sizes)
    padded = local.detach()
    if padded.shape[0] < width:  # all_gather needs equal shapes
        pad = padded.new_zeros((width - padded.shape[0], *padded.shape[1:]))
        padded = torch.cat([padded, pad])
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded.contiguous())
    parts = [piece[:size] for piece, size in zip(pieces, sizes, strict=True)]
    parts[rank] = _ScaleGrad.apply(local, float(world))
    return torch.cat(parts)


def _group() -> tuple[int, int] | None:
    """(rank, world size) inside an initialised process group of more than one, else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return dist.get_rank(), dist.get_world_size()


def local_chunk(items: Any) -> Any:
    """This rank's contiguous chunk of a batch (all of it in a single process).

    For a custom ``training_step`` that builds its own batch (LBOCMH's triplets): encode only
    the chunk, then :func:`gather_chunks` the codes back into the whole batch for the loss.
    """
    group = _group()
    if group is None:
        return items
    rank, world = group
    sizes = chunk_sizes(len(items), world)
    start = sum(sizes[:rank])
    return items[start : start + sizes[rank]]


def gather_chunks(local: torch.Tensor, n_items: int) -> torch.Tensor:
    """The whole batch's rows from every rank's :func:`local_chunk` (identity alone)."""
    group = _group()
    if group is None:
        return local
    return gather_with_grad(local, chunk_sizes(n_items, group[1]))


class _RankRandom:
    """A rank-private random stream: swapped in around per-item draws, then swapped out."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.device = device
        with torch.random.fork_rng(devices=self._devices()):
            torch.manual_seed(seed)
            self.state = self._get()

    def _devices(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []

    def _get(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _set(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    @contextmanager
    def active(self) -> Iterator[None]:
        shared = self._get()
        self._set(self.state)
        try:
            yield
        finally:
            self.state = self._get()
            self._set(shared)


class _PrivateRandomForward(torch.nn.Module):
    """Runs the wrapped (DDP) module's forward on the rank-private stream (dropout)."""

    def __init__(self, module: torch.nn.Module, random: _RankRandom) -> None:
        super().__init__()
        self.module = module
        self.random = random

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.random.active():
            return self.module(*args, **kwargs)


class SingleProcess:
    """The trainer's view of an ordinary run: every method is the identity."""

    rank = 0
    world_size = 1
    is_main = True

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def wrap(self, network: torch.nn.Module, manual: bool = False) -> torch.nn.Module:
        return network

    def batches(
        self, source: Any, order: np.ndarray, batch_size: int
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        return source.batches(order, batch_size, True)

    def gather(self, outputs: torch.Tensor, n_items: int) -> torch.Tensor:
        return outputs

    def broadcast_score(self, value: float) -> float:
        return value

    def average_gradients(self, network: torch.nn.Module) -> None:
        """Nothing to average in one process."""


class DataParallel(SingleProcess):
    """The trainer's view of one rank of a torchrun launch (see the module docstring)."""

    def __init__(self, device: torch.device, env: DistributedEnv, seed: int = 0) -> None:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        if device.type == "cuda":
            torch.cuda.set_device(device)
        super().__init__(device)
        self.rank, self.world_size, self.is_main = env.rank, env.world_size, env.rank == 0
        self.random = _RankRandom(seed + 1_000_003 * (self.rank + 1), device)
        self.manual = True  # until wrap() hands the averaging to DDP

    def wrap(self, network: torch.nn.Module, manual: bool = False) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        self.manual = manual or not any(p.requires_grad for p in network.parameters())
        if self.manual:  # gradients averaged in average_gradients (DDP refuses no-grad nets)
            return _PrivateRandomForward(network, self.random)
        if self.device.type == "cuda":
            # SyncBatchNorm swaps the BatchNorm modules in place: the trainer's network (eval,
            # checkpoints) then holds the synchronised ones too, with the same state
            network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
            ddp = DistributedDataParallel(network, device_ids=[self.device.index])
        else:
            ddp = DistributedDataParallel(network)
        return _PrivateRandomForward(ddp, self.random)

    def batches(
        self, source: Any, order: np.ndarray, batch_size: int
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(global batch indices, this rank's chunk of inputs) per global batch."""
        order = np.asarray(order, dtype=np.int64)
        world, rank = self.world_size, self.rank
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        batches = [b for b in batches if len(b) >= world]  # every rank needs an item
        if not batches:
            return
        local = [np.array_split(b, world)[rank] for b in batches]
        # every full batch gives this rank the same chunk size and the tail a smaller one, so
        # the source can read the chunks as consecutive batches of that size (one loader)
        local_order = np.concatenate(local)
        pieces = source.batches(local_order, len(local[0]), True)
        for global_indices, chunk in zip(batches, local, strict=True):
            with self.random.active():  # augmentation of this rank's items: its own stream
                indices, inputs = next(pieces)
            if not np.array_equal(indices, chunk):  # pragma: no cover - a source's contract
                raise RuntimeError("the input source did not return the requested chunk")
            yield global_indices, inputs

    def gather(self, outputs: torch.Tensor, n_items: int) -> torch.Tensor:
        return gather_with_grad(outputs, chunk_sizes(n_items, self.world_size))

    def broadcast_score(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (rank 0 validates, every rank decides alike)."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def average_gradients(self, network: torch.nn.Module) -> None:
        """DDP's all-reduce by hand, for methods that run their own forward pass (a custom
        ``training_step``) or their own backward: the mean of every parameter's gradient
        over the ranks (nothing to do when DDP wrapped the network).

        A parameter no rank gave a gradient keeps ``None`` (Adam then leaves it alone, e.g.
        the fixed network of an alternating step); one that only some ranks reached (an
        empty chunk) counts as zero on the others, so every rank reduces the same tensors.
        """
        if not self.manual:
            return
        params = [p for p in network.parameters() if p.requires_grad]
        reached = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                               device=self.device)  # fmt: skip
        dist.all_reduce(reached)
        grads = []
        for param, count in zip(params, reached.tolist(), strict=True):
            if count == 0:
                continue
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            grads.append(param.grad)
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def context(device: torch.device, seed: int = 0) -> SingleProcess:
    """The trainer's view of this run: :class:`DataParallel` under torchrun, else single."""
    env = init_process_group()
    return SingleProcess(device) if env is None else DataParallel(device, env, seed)
