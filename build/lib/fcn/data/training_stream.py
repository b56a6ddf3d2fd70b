"""The training stream, resumable mid-epoch: a pure function of (seed, epoch, position).

Lightning restores weights, optimizer, scheduler and loop counters, but a plain DataLoader
restarts its epoch from the top with a fresh shuffle and fresh augmentation draws. Here:

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
from typing import Any

import torch
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
