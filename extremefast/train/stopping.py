"""Which round to keep and when the rounds stop, by ``config.selection`` (paper step 4).

One object per run holds the rule and its state, in the shape of MONAI's
``EarlyStopHandler(patience, score_function, min_delta)``: the scheme calls it with each
finished round's summary row, it answers whether that round is the one to keep, and
:attr:`stopped` says whether another round should follow. Its state is a function of the
rows alone, so a resumed run rebuilds it by calling it with the saved rows again
(:func:`round_rule`), and ``state.pt`` needs no copy of it.
"""
from __future__ import annotations

from typing import Callable

from ..model import TrainConfig


def label_change(row: dict) -> float:
    """The mean change (1 - Dice) between a round's pseudo labels and the previous round's; 1
    for a row without a refresh (round 0, full supervision)."""
    return row.get("label_change", 1.0)


def settle_round(rows: list[dict], settle_change: float) -> int | None:
    """The first round whose labels changed by less than ``settle_change`` (where the mask-free
    rule stops), or None."""
    return next((r["round"] for r in rows if label_change(r) < settle_change), None)


class EarlyStop:
    """Keep the round that scores best; stop after ``patience`` rounds without a gain.

    Parameters
    ----------
    patience : int
        Rounds without a gain of at least ``min_delta`` after which the rounds stop.
    score_function : callable
        A round's summary row -> its score (higher is better).
    min_delta : float
        The least gain over the best score so far that counts as better (validation Dice over
        a few cases is noisy).
    """

    def __init__(self, patience: int, score_function: Callable[[dict], float], min_delta: float = 0.0):
        self.patience, self.score_function, self.min_delta = patience, score_function, min_delta
        self.best_score = -1.0  # below any Dice, so that the first round is kept
        self.since_best = 0

    def __call__(self, row: dict) -> bool:
        """Take a finished round's row; whether that round is the best so far."""
        score = self.score_function(row)
        if score >= self.best_score + self.min_delta:
            self.best_score, self.since_best = score, 0
            return True
        self.since_best += 1
        return False

    @property
    def stopped(self) -> bool:
        return self.since_best >= self.patience


class SettleStop:
    """Keep the latest round; stop once the pseudo labels settle, i.e. a round changed them by
    less than ``settle_change`` (no mask needed)."""

    def __init__(self, settle_change: float):
        self.settle_change = settle_change
        self.change = 1.0  # no round finished yet

    def __call__(self, row: dict) -> bool:
        """Take a finished round's row; the latest round is always the one kept."""
        self.change = label_change(row)
        return True

    @property
    def stopped(self) -> bool:
        return self.change < self.settle_change


def round_rule(config: TrainConfig, rows: list[dict] = ()) -> EarlyStop | SettleStop:
    """The rule of ``config.selection``, having seen the finished rounds' ``rows`` (round 0's,
    which trains nothing, left out)."""
    if config.selection == "settle":
        rule = SettleStop(config.settle_change)
    else:
        rule = EarlyStop(config.patience, lambda row: row["val_dice"]["mean"], min_delta=config.min_gain)
    for row in rows:
        if row["round"] > 0:
            rule(row)
    return rule
