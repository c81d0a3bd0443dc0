"""The iterative weakly supervised scheme (paper steps 3-4).

Round 0 makes random-walker pseudo labels from the clicks. Each round then trains the
FCN on the current pseudo labels (Dice, plus the point loss), selects the epoch on the
pseudo labels of held-back training cases (no real mask), predicts the training cases and
regularises the predictions with the random walker on the uncertainty band to make the
next round's pseudo labels.

Which round's model is kept, and when to stop, follows ``config.selection``
(:mod:`~extremefast.train.stopping`):

* ``"masks"``: the round with the best validation Dice against real masks, as the paper
  evaluates; a later round counts as better only when it gains at least ``config.min_gain``
  (validation Dice over a few cases is noisy), and the rounds stop after ``patience`` rounds
  without such a gain;
* ``"settle"``: no mask at all. The rounds go on until the training cases' pseudo labels
  settle: the mean change between a round's labels and the previous round's (1 - Dice)
  falls below ``config.settle_change``; that round's model is kept. Every summary row records
  the change, so a run with masks also shows where this rule would have stopped.

Masks, where cases have them, give the Dice columns; in ``"settle"`` mode nothing else.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..data.cache import ArrayCache
from ..errors import DataError, InputError
from ..jsonio import write_json
from ..metrics import dice
from ..model import TrainConfig, load_checkpoint, save_checkpoint, save_model
from ..pseudo.refine import average_with_walker
from ..threads import CpuShare, cpu_count
from .cases import CaseData
from .refresh import gather_pseudo, initial_pseudo_labels, refreshed_labels
from .report import mask_dice, row_line, run_summary, save_figures
from .stopping import round_rule
from .trainer import Trainer


@dataclass
class Runtime:
    """Where and how this process runs (one rank of a possibly distributed run)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    log: callable = print
    progress: object = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class RunState:
    """Where a run stands. Saved in ``state.pt`` after every epoch, as a plain dict
    (:meth:`to_dict`), so that a killed run resumes there (:meth:`from_dict`)."""

    round: int = 0  # the round under way (1 once round 0's pseudo labels are made)
    epoch: int = 0  # the epochs of that round finished
    best_select: float = -1.0  # the best selection score among them ...
    best_state: dict | None = None  # ... and that epoch's weights
    best_round: int = 0  # the round kept so far (by the round rule)
    best_model: dict | None = None  # ... and its weights

    def to_dict(self) -> dict:
        # (not dataclasses.asdict, which would deep-copy both sets of weights at every save)
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, saved: dict) -> "RunState":
        """The state saved by :meth:`to_dict`; also the untyped dict of earlier versions, whose
        ``best_val`` and ``since_best`` the round rule now rebuilds from the rows."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def next_round(self):
        self.round, self.epoch, self.best_select = self.round + 1, 0, -1.0


# what decides the crops the network learns from: a resumed run must keep them
_CROP_FIELDS = ("crop_size", "pad_mm", "pad_fraction", "window", "point_sigma")
# what decides which cases it learns from and validates on
_SPLIT_FIELDS = ("seed", "fold")


def _differences(saved: TrainConfig, now: TrainConfig, names) -> list[str]:
    """``"name X there, Y now"`` for each of ``names`` whose value differs between the two runs."""
    return [f"{name} {getattr(saved, name)!r} there, {getattr(now, name)!r} now" for name in names
            if getattr(saved, name) != getattr(now, name)]


def _check_same_run(path: Path, saved: dict, config: TrainConfig):
    """An InputError where the run saved at ``path`` cannot go on under ``config``."""
    if saved.get("variant") != config.variant:
        raise InputError(f"{path}: the run there is variant {saved.get('variant')!r}, not "
                         f"{config.variant!r}; use another output folder or the same variant")
    saved = TrainConfig.from_dict(saved)
    changed = _differences(saved, config, _CROP_FIELDS)
    if changed:  # the weights would go on learning from crops unlike those of the finished rounds
        hint = " (its 20 mm margin: --pad-fraction 0)" if saved.pad_fraction is None and config.pad_fraction else ""
        raise InputError(f"{path}: the run there cropped otherwise ({'; '.join(changed)}); resume it with its "
                         f"settings{hint} or use another output folder")
    split = _differences(saved, config, _SPLIT_FIELDS)
    if split:
        raise InputError(f"{path}: the run there split the cases otherwise ({'; '.join(split)}); resume it with "
                         "its --seed and --fold or use another output folder")


def _cpu_copy(weights: dict) -> dict:
    """A copy of a ``state_dict`` on the CPU that later training steps leave as it is."""
    return {k: v.detach().cpu().clone() for k, v in weights.items()}


class Scheme:
    """Runs (or resumes) the rounds of one variant and writes the outputs of ``out``."""

    def __init__(self, config: TrainConfig, train_cases: list[CaseData], val_cases: list[CaseData], out: Path,
                 runtime: Runtime, resume: bool = False):
        self.config, self.out, self.rt = config, Path(out), runtime
        self.train_cases, self.val_cases = train_cases, val_cases
        if len(train_cases) < 2:
            raise InputError(f"need at least 2 training cases with the organ, found {len(train_cases)}")
        if not val_cases:
            raise InputError("need at least 1 validation case with the organ")
        # full supervision (the paper's upper bound) trains one round on the masks, as long as all
        # rounds of a weak variant together (config.epochs_of_round), and refreshes no label
        if config.switches["full"]:
            missing = [c.name for c in train_cases if c.mask is None]
            if missing:
                raise InputError(f"variant full trains on the masks, and {len(missing)} training case(s) have none "
                                 f"({', '.join(missing[:5])})")
            self.last_round, self._next_labels = 1, self._masks_kept
        else:
            self.last_round, self._next_labels = config.rounds, self._refreshed
        if config.selection == "masks" and not any(c.mask is not None for c in val_cases):
            raise InputError("selecting rounds by validation masks needs masks, and no validation case has one; "
                             "use the mask-free rule (selection 'settle')")
        n_hold = max(1, int(round(config.held_back * len(train_cases))))
        self.cache = ArrayCache(self.out / "cache")
        self.trainer = Trainer(config, runtime, train_cases[:-n_hold], train_cases[-n_hold:])
        self.rows: list[dict] = []
        self.state = RunState()
        self.rule = round_rule(config)
        self._resume = resume
        # CPU threads follow the cores other processes leave (shared among the ranks)
        self.cpu = CpuShare(max(1, cpu_count() // runtime.world_size), log=runtime.log if runtime.is_main else None)

    # ------------------------------------------------------------------ checkpoints
    def save_state(self):
        if self.rt.is_main:
            save_checkpoint(self.out / "state.pt", self.config, self.trainer.network.state_dict(),
                            optimizer=self.trainer.optimizer.state_dict(), rows=self.rows,
                            state=self.state.to_dict())

    def load_state(self) -> bool:
        path = self.out / "state.pt"
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        _check_same_run(path, ckpt["config"], self.config)
        self.trainer.network.load_state_dict(ckpt["model"])
        self.trainer.optimizer.load_state_dict(ckpt["optimizer"])
        self.rows = ckpt["rows"]
        self.state = RunState.from_dict(ckpt["state"])
        self.rule = round_rule(self.config, self.rows)
        return True

    # ------------------------------------------------------------------ the rounds
    def run(self) -> dict:
        """Round 0 (or a resume), then the rounds until the last or until the round rule stops."""
        if self._resume and self.load_state():
            self.rt.log(f"resuming at round {self.state.round}, epoch {self.state.epoch}")
        t0 = time.perf_counter()
        self.cpu.adapt()
        initial_pseudo_labels(self.train_cases + self.val_cases, self.config, self.cache, self.rt)
        if not self.rows:
            self._round_zero(t0)
        if 1 < self.state.round <= self.last_round:  # the labels of the round under way, made by the one before
            for case in self.train_cases:
                case.pseudo = self._cached_label(self.state.round - 1, case.name)
        while self.state.round <= self.last_round and not self.rule.stopped:
            self._round(self.state.round)
        return self.finish()

    def _round_zero(self, t0: float):
        """The row of the random walker's labels from the clicks alone."""
        self.rows.append({"round": 0, "pseudo_label_dice": mask_dice(self.train_cases),
                          "val_dice": mask_dice(self.val_cases), "seconds": time.perf_counter() - t0})
        self.state.next_round()
        self.save_state()
        self.rt.log(row_line(self.rows[-1]))

    def _round(self, rnd: int):
        """Round ``rnd``: train, validate, make the next round's labels, keep the round or not."""
        t_round = time.perf_counter()
        self._train_epochs(rnd)
        val, val_with_walker = self.trainer.validate(self.val_cases)
        labels, kept_previous, refresh = self._next_labels(rnd)
        self.trainer.forget_tensors()
        row = {"round": rnd, "pseudo_label_dice": labels, "val_dice": val, "val_dice_with_walker": val_with_walker,
               "selection_dice": self.state.best_select, "kept_previous_labels": kept_previous,
               "seconds": time.perf_counter() - t_round, **refresh}
        self.rows.append(row)
        if self.rule(row):
            self.state.best_round, self.state.best_model = rnd, copy.deepcopy(self.state.best_state)
        self.state.next_round()
        self.save_state()
        self.rt.log(row_line(row))

    def _train_epochs(self, rnd: int):
        """Train the epochs of round ``rnd`` not yet done, saving the state after each; the
        network ends with the weights of the epoch that scored best on the held-back cases."""
        network, state = self.trainer.network, self.state
        while state.epoch < self.config.epochs_of_round(rnd):
            self.cpu.adapt()
            loss = self.trainer.train_epoch(rnd, state.epoch)
            score = self.trainer.selection_score()
            if score > state.best_select:
                state.best_select, state.best_state = score, _cpu_copy(network.state_dict())
            state.epoch += 1
            self.save_state()
            if self.rt.progress is not None:
                self.rt.progress(rnd, state.epoch, loss, score)
        network.load_state_dict(state.best_state)

    def _refreshed(self, rnd: int) -> tuple[dict, int, dict]:
        """Refresh the training cases' pseudo labels from the network (sharded over ranks; each
        writes its share to the cache). Returns their Dice against the masks, how many cases
        kept their label (an empty prediction) and the refresh's time and label change."""
        cfg, rt = self.config, self.rt
        previous = {c.name: c.pseudo for c in self.train_cases}
        self.cpu.adapt()
        t_refresh = time.perf_counter()
        fresh, kept_previous = refreshed_labels(self.trainer, self.train_cases[rt.rank::rt.world_size], cfg, rt)
        # (a case whose prediction was empty keeps its label, which the average moves towards round 0's)
        if cfg.refresh_with_walker and cfg.switches["rw_regularise"]:
            fresh = {name: average_with_walker(label, self._cached_label(0, name)) for name, label in fresh.items()}
        refresh = {"refresh_seconds": time.perf_counter() - t_refresh}
        for case in self.train_cases:
            case.pseudo = fresh.get(case.name)
            if case.pseudo is not None:
                self.cache.put(f"r{rnd}_{case.name}", {"pseudo": case.pseudo})
        gather_pseudo(self.train_cases, self.cache, rt, rnd)
        refresh["label_change"] = float(np.mean([1.0 - dice(c.pseudo, previous[c.name]) for c in self.train_cases]))
        return mask_dice(self.train_cases), kept_previous, refresh

    def _masks_kept(self, rnd: int) -> tuple[dict, int, dict]:
        """Full supervision's labels stay the masks: Dice 1 where a case has one, no refresh."""
        return mask_dice(self.train_cases, use_masks=True), 0, {}

    def _cached_label(self, rnd: int, name: str):
        """The pseudo label of round ``rnd`` of training case ``name``, from the cache."""
        got = self.cache.get(f"r{rnd}_{name}")
        if got is None:
            raise DataError(f"{self.cache.folder}: pseudo label of {name}, round {rnd}, missing; cannot go on")
        return got[0]["pseudo"]

    def finish(self) -> dict:
        """Write the kept round's model, ``summary.json`` and the figures; return the summary."""
        cfg, network = self.config, self.trainer.network
        summary = run_summary(cfg, self.rows, self.state.best_round, self.train_cases, self.val_cases)
        if self.rt.is_main:
            if self.state.best_model is not None:
                network.load_state_dict(self.state.best_model)
            save_model(self.out / "model.pt", cfg, network.state_dict(), self.state.best_round)
            write_json(self.out / "summary.json", summary)
            save_figures(self.out, self.rows, cfg.variant, self.val_cases, self.trainer.predict_crop, self.cache)
        return summary
