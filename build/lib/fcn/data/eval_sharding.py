"""Validation and test under DDP: each image on exactly one rank, so the synced confusion
matrix counts every image once and multi-process numbers equal the 1-process ones."""

from __future__ import annotations

from collections.abc import Iterator

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from fcn.core.errors import DataError


class ExactEvalSampler(DistributedSampler):
    """Image i on rank i % world_size, in split order: each image on exactly one rank.

    Unlike the default DistributedSampler nothing is repeated to even out the ranks (a repeat
    would be counted twice in the synced confusion matrix), and unlike Lightning's
    UnrepeatedDistributedSampler a rank may get no image at all (a split smaller than the world).
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.total_size = len(dataset)
        self.num_samples = len(range(self.rank, self.total_size, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def eval_sampler(dataset: Dataset, allow_empty_ranks: bool = False) -> DistributedSampler | None:
    """For val/test under DDP: each image on exactly one rank, none repeated (Lightning keeps a
    sampler that is already a DistributedSampler). None outside DDP (a plain loader is used).

    A rank without images skips Lightning's evaluation loop; only a consumer that syncs after
    the loop (fcn-eval) allows that. Otherwise a split smaller than the world is one clear
    error, the same on every rank.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    world = dist.get_world_size()
    if len(dataset) < world and not allow_empty_ranks:
        split = getattr(dataset, "split", "evaluation")
        raise DataError(
            f"the {split} split has {len(dataset)} images but the run has {world} processes, "
            f"each needs at least one: use trainer.devices={max(len(dataset), 1)} or a larger split"
        )
    return ExactEvalSampler(dataset)
