"""Interrupt and resume: a last checkpoint on SIGTERM/SIGINT, and a training stream that resumes
mid-epoch exactly where it stopped.

Lightning restores weights, optimizer, scheduler and loop counters, but a plain DataLoader
restarts its epoch from the top with a fresh shuffle and fresh augmentation draws. Here the
training stream is a pure function of (seed, epoch, position):

- `EpochSampler` shuffles with a generator seeded by (seed, epoch) (a DistributedSampler, so
  under DDP each rank takes its shard and Lightning keeps it) and hands each image its own
  augmentation seed derived from (seed, epoch, image index);
- `SeededDataset` applies the transforms under that seed (the global RNG is left untouched), so
  results do not depend on worker count, prefetching or what else drew random numbers;
- `ResumableLoader` is a DataLoader that Lightning checkpoints (it has state_dict and
  load_state_dict): how many batches this epoch were handed to training, and the global torch RNG
  state (dropout) at that point. On resume it skips exactly those batches and puts the RNG back
  before the first new batch.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, Dataset, DistributedSampler

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: decorrelates consecutive seeds


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of image `index` in `epoch` (any rank, any worker count)."""
    return (seed * _MIX + epoch * 1_000_003 + index * 7919) % (2**63 - 1)


class EpochSampler(DistributedSampler):
    """Shuffled order per (seed, epoch); yields (index, augmentation seed) pairs."""

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._skip = 0

    def skip_next(self, samples: int) -> None:
        """Leave out the first `samples` items of the next iteration only (resume)."""
        self._skip = samples

    def __iter__(self):
        skip, self._skip = self._skip, 0
        indices = list(super().__iter__())[skip:]
        return iter([(i, sample_seed(self.seed, self.epoch, i)) for i in indices])


class SeededDataset(Dataset):
    """Runs `dataset[index]` with the torch RNG seeded for that item, then restores the RNG."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int] | int):
        if isinstance(item, int):  # a plain sampler (e.g. Lightning's for overfit_batches)
            return self.dataset[item]
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class ResumableLoader(DataLoader):
    """A training DataLoader whose position within the epoch is saved in checkpoints."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, **kwargs: Any) -> None:
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized()
        # Lightning re-creates loaders with its own sampler for a few options (overfit_batches).
        sampler = kwargs.pop("sampler", None) or EpochSampler(
            dataset,
            seed,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
        )
        if not isinstance(dataset, SeededDataset):
            dataset = SeededDataset(dataset)
        super().__init__(dataset, batch_size, sampler=sampler, **kwargs)
        self._handed_out = 0
        self._rng_to_restore: torch.Tensor | None = None

    def __iter__(self):
        it = super().__iter__()
        self._handed_out = self._skipped_batches
        self._skipped_batches = 0
        for batch in it:
            if self._rng_to_restore is not None:  # as it was when this batch came originally
                torch.set_rng_state(self._rng_to_restore)
                self._rng_to_restore = None
            self._handed_out += 1
            yield batch
        self._handed_out = 0  # epoch finished: a checkpoint now resumes at the next epoch

    _skipped_batches = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": getattr(self.sampler, "epoch", 0),
            "batches": self._handed_out,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Lightning calls this only when resuming mid-epoch, before the epoch's iterator exists.
        batches = int(state.get("batches", 0))
        if batches and batches < len(self) and isinstance(self.sampler, EpochSampler):
            self.sampler.skip_next(batches * self.batch_size)
            self._skipped_batches = batches
            self._rng_to_restore = state.get("torch_rng")


def train_loader(dataset: Dataset, batch_size: int, **kwargs: Any) -> ResumableLoader:
    """The resumable training loader; its seed is the run's (seed_everything's PL_GLOBAL_SEED)."""
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    return ResumableLoader(dataset, batch_size, seed, drop_last=False, **kwargs)


class RestoreTrainingStream(L.Callback):
    """Hand the checkpointed stream position to the training loader when resuming mid-epoch.

    Lightning restores stateful loaders in `FitLoop.setup_data`, but only while the loop is
    restarting; our `configure_optimizers` asks for `trainer.estimated_stepping_batches`, which
    runs `setup_data` before the checkpoint's loop state is loaded, so that restore never
    happens. The loader's iterator is lazy (nothing is drawn before the first batch), so doing
    it at `on_train_start` is still in time.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.fit_loop._load_combined_loader_states()  # no-op unless restarting with states


class InterruptCheckpoint(L.Callback):
    """SIGTERM (pre-emption, `kill`) or SIGINT (Ctrl+C) during fit: finish the current batch,
    write `<dirpath>/last.ckpt` (mid-epoch state included) and stop.

    Lightning already turns SIGTERM into a stop at the next batch boundary (SIGTERMException,
    on all ranks). SIGINT would raise KeyboardInterrupt anywhere, even halfway through an
    optimizer step, so the first Ctrl+C is routed through the same flag; a second one aborts.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.saved: Path | None = None
        self._previous_sigint: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if _in_main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint(trainer))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_sigint()

    def _on_sigint(self, trainer: L.Trainer):
        def handler(signum, frame) -> None:
            if trainer.received_sigterm:  # second Ctrl+C: stop now, no checkpoint
                raise KeyboardInterrupt
            print("\nInterrupted: saving last.ckpt after this batch (Ctrl+C again to abort)")
            trainer._signal_connector.received_sigterm = True

        return handler

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_sigint()
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)  # all ranks call it; rank 0 writes
            self.saved = self.path

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and _in_main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
