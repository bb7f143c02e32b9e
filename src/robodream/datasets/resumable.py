"""A training sampler that a resumed run continues exactly where the interrupted one stopped.

Every robodream trainer draws its training windows with a torch sampler (shuffled, weighted or with
replacement) driven by its own seeded `torch.Generator`. A run resumed from a checkpoint used to start that
generator afresh, so its second half trained on a different draw of windows than the run that never stopped.
`ResumableSampler` wraps such a sampler and remembers the generator's state at the start of each epoch; the
trainer's `ExactResume` callback (robodream/callbacks.py) saves it in the checkpoint and, on resume, rewinds the
generator and skips the windows already trained on. Uninterrupted runs draw exactly what the wrapped sampler
draws alone, so wrapping changes no result.

The skip is in the wrapped sampler's own index stream, so it holds for one training process (CPU or one GPU).
Under DDP Lightning wraps the loader's sampler in its distributed sampler; there the resume is not exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """`sampler`, whose randomness comes from `generator`, made resumable at any step."""

    def __init__(self, sampler: Sampler[int], generator: torch.Generator):
        self.sampler = sampler
        self.generator = generator
        self.epoch_start_state = generator.get_state()
        self._skip = 0

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        # A generator function: nothing is drawn until the loader asks for the first batch, so a resume set up
        # after the loader's iterator was created (Lightning creates it before on_train_start) still applies.
        skip, self._skip = self._skip, 0
        self.epoch_start_state = self.generator.get_state()
        yield from islice(iter(self.sampler), skip, None)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the generator now, and at the start of the current epoch."""
        return {"generator": self.generator.get_state(), "epoch_start": self.epoch_start_state}

    def resume(self, state: dict[str, Any], samples_done: int, epoch_finished: bool) -> None:
        """Continue a run saved with `state_dict()` after `samples_done` samples of its current epoch, or, when
        `epoch_finished` (the checkpoint followed the epoch's last batch), at the start of the next epoch: the
        generator as the checkpoint left it. (The DataLoader's own draw at the start of an epoch is the
        caller's: ExactResume.)"""
        if epoch_finished:
            self.generator.set_state(state["generator"])
            self._skip = 0
        else:
            self.generator.set_state(state["epoch_start"])
            self._skip = samples_done
