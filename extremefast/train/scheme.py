"""The iterative weakly supervised scheme (paper steps 3-4).

Round 0 makes random-walker pseudo labels from the clicks. Each round then trains the
FCN on the current pseudo labels (Dice, plus the point loss), selects the epoch on the
pseudo labels of held-back training cases (no real mask), predicts the training cases and
regularises the predictions with the random walker on the uncertainty band to make the
next round's pseudo labels.

Which round's model is kept, and when to stop, follows ``config.selection``:

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
from dataclasses import dataclass
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


# what decides the crops the network learns from: a resumed run must keep them
_CROP_FIELDS = ("crop_size", "pad_mm", "pad_fraction", "window", "point_sigma")
# what decides which cases it learns from and validates on
_SPLIT_FIELDS = ("seed", "fold")


def _differences(saved: TrainConfig, now: TrainConfig, names) -> list[str]:
    """``"name X there, Y now"`` for each of ``names`` whose value differs between the two runs."""
    return [f"{name} {getattr(saved, name)!r} there, {getattr(now, name)!r} now" for name in names
            if getattr(saved, name) != getattr(now, name)]


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
        if config.switches["full"] and any(c.mask is None for c in train_cases):
            missing = [c.name for c in train_cases if c.mask is None]
            raise InputError(f"variant full trains on the masks, and {len(missing)} training case(s) have none "
                             f"({', '.join(missing[:5])})")
        if config.selection == "masks" and not any(c.mask is not None for c in val_cases):
            raise InputError("selecting rounds by validation masks needs masks, and no validation case has one; "
                             "use the mask-free rule (selection 'settle')")
        n_hold = max(1, int(round(config.held_back * len(train_cases))))
        self.cache = ArrayCache(self.out / "cache")
        self.trainer = Trainer(config, runtime, train_cases[:-n_hold], train_cases[-n_hold:])
        self.rows: list[dict] = []
        self.state = {"round": 0, "epoch": 0, "best_select": -1.0, "best_state": None, "best_val": -1.0,
                      "best_round": 0, "best_model": None, "since_best": 0}
        self._resume = resume
        # CPU threads follow the cores other processes leave (shared among the ranks)
        self.cpu = CpuShare(max(1, cpu_count() // runtime.world_size), log=runtime.log if runtime.is_main else None)

    # ------------------------------------------------------------------ checkpoints
    def save_state(self):
        if self.rt.is_main:
            save_checkpoint(self.out / "state.pt", self.config, self.trainer.network.state_dict(),
                            optimizer=self.trainer.optimizer.state_dict(), rows=self.rows, state=self.state)

    def load_state(self) -> bool:
        path = self.out / "state.pt"
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        if ckpt["config"].get("variant") != self.config.variant:
            raise InputError(f"{path}: the run there is variant {ckpt['config'].get('variant')!r}, not "
                             f"{self.config.variant!r}; use another output folder or the same variant")
        saved = TrainConfig.from_dict(ckpt["config"])
        changed = _differences(saved, self.config, _CROP_FIELDS)
        if changed:  # the weights would go on learning from crops unlike those of the finished rounds
            hint = " (its 20 mm margin: --pad-fraction 0)" if saved.pad_fraction is None and self.config.pad_fraction else ""
            raise InputError(f"{path}: the run there cropped otherwise ({'; '.join(changed)}); resume it with its "
                             f"settings{hint} or use another output folder")
        split = _differences(saved, self.config, _SPLIT_FIELDS)
        if split:
            raise InputError(f"{path}: the run there split the cases otherwise ({'; '.join(split)}); resume it with "
                             "its --seed and --fold or use another output folder")
        raw = self.trainer.network
        raw.load_state_dict(ckpt["model"])
        self.trainer.optimizer.load_state_dict(ckpt["optimizer"])
        self.rows = ckpt["rows"]
        self.state = ckpt["state"]
        return True

    # ------------------------------------------------------------------ the rounds
    def run(self) -> dict:
        cfg, rt = self.config, self.rt
        resumed = self._resume and self.load_state()
        if resumed:
            rt.log(f"resuming at round {self.state['round']}, epoch {self.state['epoch']}")
        t0 = time.perf_counter()
        self.cpu.adapt()
        initial_pseudo_labels(self.train_cases + self.val_cases, cfg, self.cache, rt)
        if not self.rows:
            self.rows.append({"round": 0, "pseudo_label_dice": mask_dice(self.train_cases),
                              "val_dice": mask_dice(self.val_cases), "seconds": time.perf_counter() - t0})
            self.state.update(round=1, epoch=0)
            self.save_state()
            rt.log(row_line(self.rows[-1]))
        # pseudo labels of the round being trained come from the cache of the previous round
        rnd = self.state["round"]
        if rnd > 1 and not cfg.switches["full"]:
            for case in self.train_cases:
                case.pseudo = self._cached_label(rnd - 1, case.name)
        max_rounds = 1 if cfg.switches["full"] else cfg.rounds
        while self.state["round"] <= max_rounds and not self._stop():
            rnd = self.state["round"]
            t_round = time.perf_counter()
            while self.state["epoch"] < cfg.epochs_of_round(rnd):
                self.cpu.adapt()
                loss = self.trainer.train_epoch(rnd, self.state["epoch"])
                score = self.trainer.selection_score()
                if score > self.state["best_select"]:
                    raw = self.trainer.network
                    self.state["best_select"] = score
                    self.state["best_state"] = {k: v.detach().cpu().clone() for k, v in raw.state_dict().items()}
                self.state["epoch"] += 1
                self.save_state()
                if rt.progress is not None:
                    rt.progress(rnd, self.state["epoch"], loss, score)
            raw = self.trainer.network
            raw.load_state_dict(self.state["best_state"])
            val, val_with_walker = self.trainer.validate(self.val_cases)
            # the next round's pseudo labels (sharded over ranks; each writes its share)
            refresh = {}  # the refresh's time and label change, in the summary row of rounds that refresh
            kept_previous = 0  # cases whose pseudo label the refresh left unchanged (empty prediction)
            if not cfg.switches["full"]:
                previous = {c.name: c.pseudo for c in self.train_cases}
                mine = self.train_cases[rt.rank::rt.world_size]
                self.cpu.adapt()
                t_refresh = time.perf_counter()
                fresh, kept_previous = refreshed_labels(self.trainer, mine, cfg, rt)
                # (a case whose prediction was empty keeps its label, which the average moves towards round 0's)
                if cfg.refresh_with_walker and cfg.switches["rw_regularise"]:
                    fresh = {name: average_with_walker(label, self._cached_label(0, name)) for name, label in fresh.items()}
                refresh["refresh_seconds"] = time.perf_counter() - t_refresh
                for case in self.train_cases:
                    case.pseudo = fresh.get(case.name)
                    if case.pseudo is not None:
                        self.cache.put(f"r{rnd}_{case.name}", {"pseudo": case.pseudo})
                gather_pseudo(self.train_cases, self.cache, rt, rnd)
                refresh["label_change"] = float(np.mean([1.0 - dice(c.pseudo, previous[c.name])
                                                         for c in self.train_cases]))
            self.trainer.forget_tensors()
            pl_dice = mask_dice(self.train_cases, use_masks=cfg.switches["full"])
            row = {"round": rnd, "pseudo_label_dice": pl_dice, "val_dice": val, "val_dice_with_walker": val_with_walker,
                   "selection_dice": self.state["best_select"], "kept_previous_labels": kept_previous,
                   "seconds": time.perf_counter() - t_round, **refresh}
            self.rows.append(row)
            if cfg.selection == "settle":
                # mask-free: the latest round is the one kept
                self.state.update(best_round=rnd, best_model=copy.deepcopy(self.state["best_state"]))
            elif val["mean"] >= self.state["best_val"] + cfg.min_gain:
                self.state.update(best_val=val["mean"], best_round=rnd, since_best=0,
                                  best_model=copy.deepcopy(self.state["best_state"]))
            else:
                self.state["since_best"] += 1
            self.state.update(round=rnd + 1, epoch=0, best_select=-1.0)
            self.save_state()
            rt.log(row_line(row))
        return self.finish()

    def _cached_label(self, rnd: int, name: str):
        """The pseudo label of round ``rnd`` of training case ``name``, from the cache."""
        got = self.cache.get(f"r{rnd}_{name}")
        if got is None:
            raise DataError(f"{self.cache.folder}: pseudo label of {name}, round {rnd}, missing; cannot go on")
        return got[0]["pseudo"]

    def _stop(self) -> bool:
        """Whether the rounds are over (besides the round limit), by ``config.selection``."""
        if self.config.selection == "masks":
            return self.state["since_best"] >= self.config.patience
        last = self.rows[-1] if len(self.rows) > 1 else {}
        return last.get("label_change", 1.0) < self.config.settle_change

    def finish(self) -> dict:
        cfg = self.config
        summary = run_summary(cfg, self.rows, self.state["best_round"], self.train_cases, self.val_cases)
        if self.rt.is_main:
            raw = self.trainer.network
            if self.state["best_model"] is not None:
                raw.load_state_dict(self.state["best_model"])
            save_model(self.out / "model.pt", cfg, raw.state_dict(), self.state["best_round"])
            write_json(self.out / "summary.json", summary)
            save_figures(self.out, self.rows, self.config.variant, self.val_cases, self.trainer.predict_crop, self.cache)
        return summary
