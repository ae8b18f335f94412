"""Training callbacks of our own (the rest come from Lightning, chosen in ``callbacks``)."""

from __future__ import annotations

import pytorch_lightning as pl


class EpochSeed(pl.Callback):
    """Reseeds Python, NumPy and torch with ``seed + epoch`` before the first batch of every
    training epoch, so dropout and any other randomness of an epoch depend only on the seed and
    the epoch number: a run resumed from its last checkpoint ends exactly like an uninterrupted
    one. The epoch is the one Lightning also gives the samplers (``set_epoch``); the first batch
    is used rather than ``on_train_epoch_start``, which Lightning skips for the epoch it
    restarts after loading a checkpoint.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch, batch_idx: int) -> None:
        if batch_idx == 0:
            epoch = trainer.fit_loop.epoch_progress.current.processed
            pl.seed_everything(self.seed + epoch, workers=True, verbose=False)
