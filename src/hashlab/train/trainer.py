"""The one training loop of every deep hashing method.

A method (``hashlab.methods.deep.base.DeepHashMethod`` or anything with the same hooks)
declares *what* to learn: a network and a loss. The :class:`Trainer` owns *how*:

* seeding of python, numpy and torch (:func:`seed_everything`) before the network is built,
  and ``torch.use_deterministic_algorithms`` on CPU, so a CPU run repeats bit for bit;
* the device: CUDA when available unless ``device=`` says otherwise (never a hard-coded
  ``cuda:0``); mixed precision (bf16 where supported, else fp16 with a gradient scaler) on
  GPU only; losses are always computed in float32;
* the epoch loop with a tqdm bar; per-epoch validation mAP (``hashlab.metrics.evaluate``,
  ``map@all``) of validation items, carved from the *training* data, searched against the
  training items. Never the test queries: selecting checkpoints on them inflates results;
* best-epoch selection by validation mAP, early stopping after ``patience`` epochs without
  improvement, and the best weights restored at the end;
* under ``torchrun`` (``WORLD_SIZE`` > 1): DistributedDataParallel, each global batch split
  across the ranks with the loss computed on the whole of it, rank-0 checkpoints, progress
  and validation (:mod:`hashlab.train.distributed`); without it nothing changes;
* a checkpoint (``last.pt``) after every epoch holding network, optimiser, scaler, every RNG
  state, history, best weights and the method's ``state.extras``; ``resume=True`` continues
  from the last completed epoch, so an interrupted run ends where an uninterrupted one would.

Method hooks the trainer calls (``DeepHashMethod`` gives defaults for all but ``loss``):

* ``loss(outputs, labels, state) -> scalar``: ``outputs`` are the network's outputs (float32)
  for the batch, ``labels`` its (B, C) multi-hot float labels, ``state`` the
  :class:`TrainState` (``state.batch_indices``, ``state.train_labels``, ``state.extras``...);
* ``on_train_start(state)`` (fresh runs only), ``on_epoch_start(state)``,
  ``on_epoch_end(state)``, ``on_train_end(state)`` (after the best weights are restored);
* ``epoch_order(state, rng) -> indices``: training items of one epoch, in order (default:
  a permutation of all of them; ADSH returns its sampled subsets);
* ``parameter_groups(network, lr) -> list[dict]``: optimiser parameter groups;
* ``binarize(outputs) -> (N, K) uint8``: codes from network outputs (for validation);
* optional ``on_epoch_validated(state, record)``: after each epoch with its history record
  (loss, ``validation_<metric>``); the bench harness sets it to report validation curves to
  its tuner, which may raise to stop a hopeless trial.

Optional hooks for methods whose step is not "one network, one batch of items, one loss"
(the cross-modal methods train two networks alternately, on triplets or on one modality's
items at a time); the trainer looks them up on the method and falls back to the default
path above when they are absent:

* ``training_batches(state, rng) -> iterable``: the batches of one epoch, whatever they are
  (the default: ``train_inputs.batches`` over ``epoch_order``). It is iterated lazily, so a
  batch drawn after earlier steps sees the networks those steps produced;
* ``training_step(batch, state) -> scalar | None``: the loss of one batch (``None`` skips the
  batch). The method runs its own forward pass, inside ``state.autocast()`` for mixed
  precision; the trainer does ``zero_grad`` / backward / optimiser step / scaler. With
  ``network`` a container of several sub-networks, one optimiser over all of them behaves
  as one optimiser per sub-network: a parameter that received no gradient in a step
  (``zero_grad(set_to_none=True)``) is left untouched by Adam and SGD, its moments and step
  count included;
* ``validation_score(state, validation, metric) -> float``: the per-epoch validation score
  (higher is better) from the ``validation`` object given to :meth:`Trainer.fit`, which the
  trainer passes through untouched (default: ``metric`` of validation items searched
  against the training items, both coded by ``binarize``).

Checkpoints are our own pickles (they hold numpy RNG states), read with
``torch.load(weights_only=False)``: only resume from checkpoint folders you wrote.
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hashlab.train.distributed import SingleProcess
from hashlab.train.distributed import context as distributed_context
from hashlab.train.inputs import InputSource

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "deterministic_cpu",
    "resolve_device",
    "seed_everything",
]

CHECKPOINT_FILE = "last.pt"


@dataclass
class TrainConfig:
    """How to train (the method's own hyper-parameters live in its config)."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    optimizer: str = "adam"  # "adam" or "sgd" (with momentum)
    momentum: float = 0.9
    patience: int | None = 10  # epochs without validation improvement; None = never stop
    seed: int = 0
    device: str | None = None  # None: cuda if available, else cpu
    amp: bool = True  # mixed precision; only ever used on CUDA
    progress: bool = False
    checkpoint_dir: str | None = None
    resume: bool = False
    num_workers: int = 0
    validation_metric: str = "map@all"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be at least 2 (pairwise losses), got {self.batch_size}"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.resume and not self.checkpoint_dir:
            raise ValueError("resume=True needs a checkpoint_dir to resume from")


@dataclass
class TrainState:
    """What a method's hooks can see and use during training."""

    network: torch.nn.Module
    device: torch.device
    train_labels: torch.Tensor  # (N, C) multi-hot float32, on device
    predict: Callable[[np.ndarray], torch.Tensor]  # eval-mode outputs for training items
    epoch: int = 0  # 0-based epoch being trained
    step: int = 0  # optimiser steps so far
    batch_indices: np.ndarray | None = None  # training-item indices of the current batch
    extras: dict[str, Any] = field(default_factory=dict)  # method state, checkpointed
    train_inputs: Any = None  # the training InputSource (e.g. EDDH's S^ reads its features)
    #: ``with state.autocast():`` mixed precision where the trainer uses it (custom steps)
    autocast: Callable[[], Any] = contextlib.nullcontext


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int  # 1-based; the epoch whose weights the network holds now
    best_score: float | None  # validation score of that epoch (None without validation)
    stopped_early: bool
    device: str
    amp_dtype: str | None
    resumed_from_epoch: int  # epochs already done when this call started (0 = fresh)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (CUDA's included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; a name is checked against the machine."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available here")
    return resolved


@contextmanager
def deterministic_cpu(enabled: bool) -> Iterator[None]:
    """Deterministic algorithms on for the block (CPU), then the previous setting back."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _rng_states(shuffle_rng: np.random.Generator) -> dict[str, Any]:
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "shuffle": shuffle_rng.bit_generator.state,
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any], shuffle_rng: np.random.Generator) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    shuffle_rng.bit_generator.state = states["shuffle"]
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class Trainer:
    """Trains one network for one method; see the module docstring."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def fit(
        self,
        method: Any,
        build_network: Callable[[], torch.nn.Module],
        train_inputs: InputSource,
        train_labels: np.ndarray,
        validation: tuple[InputSource, np.ndarray] | Any | None = None,
        fingerprint: dict[str, Any] | None = None,
    ) -> tuple[torch.nn.Module, TrainResult]:
        """Train and return (network holding the best weights, result).

        ``train_labels`` / validation labels are (N, C) multi-hot; ``fingerprint`` (JSON-able)
        identifies the run so that ``resume`` refuses a checkpoint of a different one. A
        method with a ``validation_score`` hook gets ``validation`` as it was passed here.
        """
        config = self.config
        # under torchrun: this rank's device, DDP, sharded batches (hashlab.train.distributed)
        self._parallel = distributed_context(resolve_device(config.device), config.seed)
        device = self._parallel.device
        seed_everything(config.seed)
        with deterministic_cpu(device.type == "cpu"):
            network = build_network().to(device)
            return self._run(
                method, network, device, train_inputs, train_labels, validation, fingerprint or {}
            )

    # -- the loop ---------------------------------------------------------------------------
    def _run(
        self,
        method: Any,
        network: torch.nn.Module,
        device: torch.device,
        train_inputs: InputSource,
        train_labels: np.ndarray,
        validation: tuple[InputSource, np.ndarray] | Any | None,
        fingerprint: dict[str, Any],
    ) -> tuple[torch.nn.Module, TrainResult]:
        config = self.config
        use_amp = config.amp and device.type == "cuda"
        amp_dtype = None
        if use_amp:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        optimizer = self._optimizer(method.parameter_groups(network, config.lr))
        labels_on_device = torch.as_tensor(train_labels, dtype=torch.float32, device=device)
        shuffle_rng = np.random.default_rng(config.seed)
        parallel = getattr(self, "_parallel", None) or SingleProcess(device)

        def autocast() -> Any:
            return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=use_amp)

        def forward(inputs: torch.Tensor, module: torch.nn.Module = network) -> torch.Tensor:
            with autocast():
                return module(inputs.to(device, non_blocking=True)).float()

        def predict(source: InputSource, indices: np.ndarray) -> torch.Tensor:
            was_training = network.training
            network.eval()
            outputs = []
            with torch.no_grad():
                for _, inputs in source.batches(indices, max(config.batch_size, 256), False):
                    outputs.append(forward(inputs))
            network.train(was_training)
            return torch.cat(outputs)

        state = TrainState(
            network=network,
            device=device,
            train_labels=labels_on_device,
            predict=lambda indices: predict(train_inputs, np.asarray(indices)),
            train_inputs=train_inputs,
            autocast=autocast,
        )
        custom_batches = getattr(method, "training_batches", None)
        custom_step = getattr(method, "training_step", None)
        custom_validation = getattr(method, "validation_score", None)
        # the training forward pass goes through DDP; a custom step, or a loss that runs its
        # own backward (PC-AEGAN's game), has its gradients averaged by hand instead
        manual = custom_step is not None or getattr(method, "loss_runs_backward", False)
        train_network = network if custom_step else parallel.wrap(network, manual=manual)

        def default_step(batch: tuple[np.ndarray, torch.Tensor]) -> torch.Tensor | None:
            indices, inputs = batch
            if len(indices) < 2:  # a pairwise loss needs a pair; BatchNorm needs two
                return None
            state.batch_indices = indices
            # the loss sees the global batch: other ranks' outputs gathered (distributed.py)
            outputs = parallel.gather(forward(inputs, train_network), len(indices))
            return method.loss(outputs, labels_on_device[torch.from_numpy(indices)], state)

        history: list[dict[str, float]] = []
        best = {"score": None, "epoch": 0, "network": None}
        bad_epochs = 0
        stopped = False
        start_epoch = 0
        checkpoint = (
            Path(config.checkpoint_dir) / CHECKPOINT_FILE if config.checkpoint_dir else None
        )
        if checkpoint is not None and config.resume and checkpoint.is_file():
            saved = torch.load(checkpoint, map_location=device, weights_only=False)
            if saved["fingerprint"] != fingerprint:
                raise ValueError(
                    f"checkpoint {checkpoint} belongs to a different run "
                    f"({saved['fingerprint']}), not {fingerprint}; use another checkpoint folder"
                )
            network.load_state_dict(saved["network"])
            optimizer.load_state_dict(saved["optimizer"])
            scaler.load_state_dict(saved["scaler"])
            _set_rng_states(saved["rng"], shuffle_rng)
            history, best, bad_epochs = saved["history"], saved["best"], saved["bad_epochs"]
            stopped, state.step, state.extras = saved["stopped"], saved["step"], saved["extras"]
            start_epoch = saved["epoch"]
        else:
            method.on_train_start(state)

        bar = tqdm(
            total=config.epochs, initial=start_epoch, desc=f"train {method.name}", unit="epoch",
            disable=not config.progress or not parallel.is_main,
        )  # fmt: skip
        for epoch in range(start_epoch, config.epochs):
            if stopped:
                break
            started = time.perf_counter()
            state.epoch = epoch
            network.train()
            method.on_epoch_start(state)
            if custom_batches is not None:
                batches = custom_batches(state, shuffle_rng)
            else:
                order = np.asarray(method.epoch_order(state, shuffle_rng), dtype=np.int64)
                batches = parallel.batches(train_inputs, order, config.batch_size)
            losses = []
            for batch in batches:
                loss = custom_step(batch, state) if custom_step else default_step(batch)
                if loss is None:
                    continue
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                parallel.average_gradients(network)  # no-op alone or when DDP did it
                scaler.step(optimizer)
                scaler.update()
                state.step += 1
                losses.append(float(loss.detach()))
            state.batch_indices = None
            method.on_epoch_end(state)
            record: dict[str, float] = {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                "steps": state.step,
                "train_seconds": time.perf_counter() - started,  # without validation
            }
            if validation is not None:
                if not parallel.is_main:
                    score = 0.0  # rank 0 validates; its score is broadcast below
                elif custom_validation is not None:
                    network.eval()
                    with torch.no_grad():
                        score = float(
                            custom_validation(state, validation, config.validation_metric)
                        )
                else:
                    score = self._validate(
                        method, predict, train_inputs, train_labels, validation
                    )
                score = parallel.broadcast_score(score)
                record[f"validation_{config.validation_metric}"] = score
                if best["score"] is None or score > best["score"]:
                    best = {"score": score, "epoch": epoch + 1, "network": _cpu_state_dict(network)}
                    bad_epochs = 0
                else:
                    bad_epochs += 1
                    stopped = config.patience is not None and bad_epochs >= config.patience
            else:
                best = {"score": None, "epoch": epoch + 1, "network": None}
            record["seconds"] = time.perf_counter() - started
            history.append(record)
            # an optional listener (the bench harness's tuner) sees each epoch's record; it may
            # raise to abandon the run (Optuna's median pruner does)
            listener = getattr(method, "on_epoch_validated", None)
            if listener is not None:
                listener(state, record)
            bar.update(1)
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
            if checkpoint is not None and parallel.is_main:  # one writer of the checkpoint
                self._save_checkpoint(
                    checkpoint, epoch + 1, network, optimizer, scaler, shuffle_rng, history,
                    best, bad_epochs, stopped, state, fingerprint,
                )  # fmt: skip
        bar.close()
        if best["network"] is not None:
            network.load_state_dict(best["network"])
        network.eval()
        method.on_train_end(state)
        result = TrainResult(
            history=history,
            best_epoch=int(best["epoch"]),
            best_score=best["score"],
            stopped_early=bool(stopped),
            device=str(device),
            amp_dtype=str(amp_dtype).replace("torch.", "") if amp_dtype else None,
            resumed_from_epoch=start_epoch,
        )
        return network, result

    def _optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        config = self.config
        if config.optimizer == "sgd":
            return torch.optim.SGD(
                groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)

    def _validate(
        self,
        method: Any,
        predict: Callable[[InputSource, np.ndarray], torch.Tensor],
        train_inputs: InputSource,
        train_labels: np.ndarray,
        validation: tuple[InputSource, np.ndarray],
    ) -> float:
        """Validation items as queries against the training items as the database."""
        from hashlab.metrics import evaluate

        validation_inputs, validation_labels = validation
        query_codes = method.binarize(predict(validation_inputs, np.arange(len(validation_inputs))))
        db_codes = method.binarize(predict(train_inputs, np.arange(len(train_inputs))))
        scores = evaluate(
            query_codes,
            db_codes,
            np.asarray(validation_labels),
            np.asarray(train_labels),
            metrics=[self.config.validation_metric],
        )
        return float(scores[self.config.validation_metric])

    def _save_checkpoint(
        self,
        path: Path,
        epoch: int,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        shuffle_rng: np.random.Generator,
        history: list[dict[str, float]],
        best: dict[str, Any],
        bad_epochs: int,
        stopped: bool,
        state: TrainState,
        fingerprint: dict[str, Any],
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "epoch": epoch,
            "step": state.step,
            "network": _cpu_state_dict(network),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "scaler": scaler.state_dict(),
            "rng": _rng_states(shuffle_rng),
            "history": history,
            "best": best,
            "bad_epochs": bad_epochs,
            "stopped": stopped,
            "extras": state.extras,
            "fingerprint": fingerprint,
        }
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)  # written whole, then renamed: never a half checkpoint
        tmp.replace(path)
