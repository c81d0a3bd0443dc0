"""The iterative weakly supervised scheme (paper steps 3-4).

Round 0 makes random-walker pseudo labels from the clicks. Each round then trains the
FCN on the current pseudo labels (Dice, plus the point loss), selects the epoch on the
pseudo labels of held-back training cases (no real mask), predicts the training cases and
regularises the predictions with the random walker on the uncertainty band to make the
next round's pseudo labels.

Which round's model is kept, and when to stop, follows ``config.selection``:

* ``"masks"``: the round with the best validation Dice against real masks (stopping after
  ``patience`` rounds without gain), as the paper evaluates;
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
from ..losses import point_loss
from ..losses.dice import dice_loss
from ..metrics import dice, summarise
from ..model import TrainConfig, build_model, load_checkpoint, network_input, save_checkpoint, save_model, unwrap
from ..model.network import crop_volumes
from ..pseudo.extreme_points import jitter_points
from ..pseudo.pseudo_label import get_preset
from ..pseudo.refine import refine_probabilities
from ..pseudo.roi import Box, paste_back, roi_box
from ..xp import cuda_available
from .cases import CaseData
from .report import mask_dice, row_line, run_summary, save_figures


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


def canonical_box(case: CaseData, config: TrainConfig, points=None) -> Box:
    pts = case.points if points is None else points
    return roi_box(pts, case.spacing, case.image.shape, config.pad_mm, (config.crop_size,) * 3)


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
        self.held_back = train_cases[-n_hold:]
        self.fit_cases = train_cases[:-n_hold]
        self.cache = ArrayCache(self.out / "cache")
        self.model = build_model(config).to(runtime.device)
        if runtime.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            dev = runtime.device
            self.model = DDP(self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        # the training forward pass: compiled on CUDA where asked, else the model itself
        self._forward = (torch.compile(self.model) if config.compile and runtime.device.type == "cuda"
                         else self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.rows: list[dict] = []
        self.state = {"round": 0, "epoch": 0, "best_select": -1.0, "best_state": None, "best_val": -1.0,
                      "best_round": 0, "best_model": None, "since_best": 0}
        self._resume = resume
        self._tensors = {}
        self.kept_previous = 0  # cases whose pseudo label a refresh left unchanged (empty prediction)

    # ------------------------------------------------------------------ data on device
    def _case_tensor(self, case: CaseData) -> torch.Tensor:
        """(2, X, Y, Z) on the device: image and current pseudo label (or the real mask)."""
        target = case.mask.astype(np.float32) if self.config.switches["full"] else case.pseudo
        key = (case.name, id(target))
        if key not in self._tensors:
            self._tensors = {k: v for k, v in self._tensors.items() if k[0] != case.name}
            arr = np.stack([case.image, target]).astype(np.float32)
            self._tensors[key] = torch.from_numpy(arr).to(self.rt.device)
        return self._tensors[key]

    # ------------------------------------------------------------------ round 0
    def initial_pseudo_labels(self):
        """Random-walker pseudo labels of every case (training ones sharded over ranks)."""
        preset = get_preset(self.config.pseudo_preset)
        for case in self.train_cases + self.val_cases:
            cached = self.cache.get(f"r0_{case.name}")
            if cached is not None:
                case.pseudo = cached[0]["pseudo"]
        todo = [c for c in self.train_cases + self.val_cases if c.pseudo is None]
        mine = todo[self.rt.rank::self.rt.world_size]
        for case in mine:
            from ..pseudo.pseudo_label import pseudo_label_from_points

            pl = pseudo_label_from_points(case.image, case.spacing, case.points, preset.with_(window=(0.0, 1.0)))
            case.pseudo = pl.in_image_space()
            if self.rt.is_main or self.rt.world_size > 1:
                self.cache.put(f"r0_{case.name}", {"pseudo": case.pseudo})
        self._gather_pseudo(todo)

    def _gather_pseudo(self, todo: list[CaseData], rnd: int = 0):
        if self.rt.world_size == 1:
            return
        import torch.distributed as dist

        dist.barrier()
        for case in todo:  # every rank wrote its share to the cache; read the others' back
            if case.pseudo is None:
                got = None
                for _ in range(600):
                    got = self.cache.get(f"r{rnd}_{case.name}")
                    if got is not None:
                        break
                    time.sleep(0.1)
                if got is None:
                    raise DataError(f"{self.cache.folder}: pseudo label of {case.name} from another rank is missing")
                case.pseudo = got[0]["pseudo"]

    # ------------------------------------------------------------------ training
    def _batch(self, rng: np.random.Generator):
        cfg = self.config
        inputs, targets, pcs = [], [], []
        for _ in range(cfg.batch_size):
            case = self.fit_cases[int(rng.integers(len(self.fit_cases)))]
            noisy = jitter_points(case.points, case.spacing, cfg.click_noise_mm, rng, case.image.shape)
            box = canonical_box(case, cfg, noisy)
            x, target, pc = network_input(self._case_tensor(case), box, noisy, cfg)
            if rng.random() < 0.5:  # flip along the first axis: anatomy is roughly mirror-symmetric there
                x, target, pc = x.flip(1), target.flip(1), pc.flip(1)
            inputs.append(x)
            targets.append(target)
            pcs.append(pc)
        return torch.stack(inputs), torch.stack(targets), torch.stack(pcs)

    def _loss(self, x, y, pc):
        cfg = self.config
        use_amp = cfg.amp and self.rt.device.type == "cuda"
        with torch.autocast(device_type=self.rt.device.type, dtype=torch.bfloat16, enabled=use_amp):
            p = self._forward(x)
        p = p.float()
        loss = dice_loss(p, y)
        if cfg.switches["point_loss"]:
            loss = loss + cfg.point_loss_weight * point_loss(p, pc, num_filters=cfg.point_loss_filters, validate=False)
        return loss

    def train_epoch(self, rnd: int, epoch: int) -> float:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, rnd, epoch, self.rt.rank])
        steps = cfg.steps_per_epoch or max(1, len(self.fit_cases) // cfg.batch_size)
        self.model.train()
        losses = []
        for _ in range(steps):
            x, y, pc = self._batch(rng)
            loss = self._loss(x, y, pc)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))

    @torch.no_grad()
    def predict_crop(self, case: CaseData) -> tuple[np.ndarray, Box, np.ndarray]:
        """The model's probability in the canonical crop, the box and the image crop."""
        box = canonical_box(case, self.config)
        x, _, _ = network_input(self._case_tensor(case), box, case.points, self.config)
        self.model.eval()
        raw = unwrap(self.model)
        use_amp = self.config.amp and self.rt.device.type == "cuda"
        with torch.autocast(device_type=self.rt.device.type, dtype=torch.bfloat16, enabled=use_amp):
            p = raw(x[None])[0, 0].float()
        return p.cpu().numpy(), box, x[0].cpu().numpy()

    def selection_score(self) -> float:
        """Dice against the pseudo labels of the held-back training cases (no real mask).

        The soft Dice (1e-3 weight) breaks ties, so that while every prediction is still
        below 0.5 (hard Dice 0) the better-trained epoch is kept rather than the first.
        """
        scores = []
        for case in self.held_back:
            p, box, _ = self.predict_crop(case)
            target = crop_volumes(self._case_tensor(case), box)[1].cpu().numpy()
            soft = 2.0 * float((p * target).sum()) / (float((p * p).sum() + (target * target).sum()) + 1e-6)
            scores.append(dice(p, target) + 1e-3 * soft)
        return float(np.mean(scores))

    def regularise_all(self, cases) -> dict[str, np.ndarray]:
        """Next round's pseudo labels: each prediction, random-walker regularised on the
        uncertainty band (P >= .5 and P < .5 eroded by a ball of ``rw_radius``).

        The random walker runs on a crop of ``rw_crop_size`` (finer than the network's crop
        on small CPU configurations), so the band follows the image's edges at that scale.
        On a GPU with CuPy the crops, seeds and paste-back run on the device and the cases'
        random walks are solved together; on the CPU one after another.
        """
        cfg = self.config
        out, items, names = {}, [], []
        for case in cases:
            p, box, _ = self.predict_crop(case)
            if not (p >= 0.5).any():
                # an empty prediction (an under-trained network whose soft Dice optimum stays
                # below 0.5) would erase the organ from every later round: keep the current label
                self.kept_previous += 1
                out[case.name] = case.pseudo
                continue
            prob = paste_back(p.astype(np.float32), box, order=1)
            if not cfg.switches["rw_regularise"]:
                out[case.name] = prob
                continue
            # (no warm start: starting the random walk from the current pseudo label measured
            # slower, 0.83 s against 0.68 s per refresh of the main job's 8 cases on the CPU)
            items.append((prob, case.image, case.points, case.spacing))
            names.append(case.name)
        device = "cuda" if (self.rt.device.type == "cuda" and cuda_available()) else "cpu"
        refined = refine_probabilities(items, pad_mm=cfg.pad_mm, crop_size=cfg.rw_crop_size, radius=cfg.rw_radius,
                                       beta=cfg.refine_beta, device=device)
        out.update(zip(names, refined))
        return out

    def validate(self) -> dict:
        """Dice against the real masks of the validation cases that have one."""
        scores = []
        for case in self.val_cases:
            if case.mask is None:
                continue
            p, box, _ = self.predict_crop(case)
            scores.append(dice(paste_back(p, box), case.mask))
        return summarise(scores)

    # ------------------------------------------------------------------ checkpoints
    def save_state(self):
        if self.rt.is_main:
            save_checkpoint(self.out / "state.pt", self.config, unwrap(self.model).state_dict(),
                            optimizer=self.optimizer.state_dict(), rows=self.rows, state=self.state)

    def load_state(self) -> bool:
        path = self.out / "state.pt"
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        if ckpt["config"].get("variant") != self.config.variant:
            raise InputError(f"{path}: the run there is variant {ckpt['config'].get('variant')!r}, not "
                             f"{self.config.variant!r}; use another output folder or the same variant")
        raw = unwrap(self.model)
        raw.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
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
        self.initial_pseudo_labels()
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
                got = self.cache.get(f"r{rnd - 1}_{case.name}")
                if got is None:
                    raise DataError(f"{self.cache.folder}: pseudo labels of round {rnd - 1} missing; cannot resume")
                case.pseudo = got[0]["pseudo"]
        max_rounds = 1 if cfg.switches["full"] else cfg.rounds
        while self.state["round"] <= max_rounds and not self._stop():
            rnd = self.state["round"]
            t_round = time.perf_counter()
            while self.state["epoch"] < cfg.epochs_per_round * (cfg.rounds if cfg.switches["full"] else 1):
                loss = self.train_epoch(rnd, self.state["epoch"])
                score = self.selection_score()
                if score > self.state["best_select"]:
                    raw = unwrap(self.model)
                    self.state["best_select"] = score
                    self.state["best_state"] = {k: v.detach().cpu().clone() for k, v in raw.state_dict().items()}
                self.state["epoch"] += 1
                self.save_state()
                if rt.progress is not None:
                    rt.progress(rnd, self.state["epoch"], loss, score)
            raw = unwrap(self.model)
            raw.load_state_dict(self.state["best_state"])
            val = self.validate()
            # the next round's pseudo labels (sharded over ranks; each writes its share)
            refresh = {}  # the refresh's time and label change, in the summary row of rounds that refresh
            if not cfg.switches["full"]:
                previous = {c.name: c.pseudo for c in self.train_cases}
                mine = self.train_cases[rt.rank::rt.world_size]
                self.kept_previous = 0
                t_refresh = time.perf_counter()
                fresh = self.regularise_all(mine)
                refresh["refresh_seconds"] = time.perf_counter() - t_refresh
                for case in self.train_cases:
                    case.pseudo = fresh.get(case.name)
                    if case.pseudo is not None:
                        self.cache.put(f"r{rnd}_{case.name}", {"pseudo": case.pseudo})
                self._gather_pseudo(self.train_cases, rnd)
                refresh["label_change"] = float(np.mean([1.0 - dice(c.pseudo, previous[c.name])
                                                         for c in self.train_cases]))
            self._tensors.clear()
            pl_dice = mask_dice(self.train_cases, use_masks=cfg.switches["full"])
            row = {"round": rnd, "pseudo_label_dice": pl_dice, "val_dice": val,
                   "selection_dice": self.state["best_select"], "kept_previous_labels": self.kept_previous,
                   "seconds": time.perf_counter() - t_round, **refresh}
            self.rows.append(row)
            if cfg.selection == "settle":
                # mask-free: the latest round is the one kept
                self.state.update(best_round=rnd, best_model=copy.deepcopy(self.state["best_state"]))
            elif val["mean"] > self.state["best_val"]:
                self.state.update(best_val=val["mean"], best_round=rnd, since_best=0,
                                  best_model=copy.deepcopy(self.state["best_state"]))
            else:
                self.state["since_best"] += 1
            self.state.update(round=rnd + 1, epoch=0, best_select=-1.0)
            self.save_state()
            rt.log(row_line(row))
        return self.finish()

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
            raw = unwrap(self.model)
            if self.state["best_model"] is not None:
                raw.load_state_dict(self.state["best_model"])
            save_model(self.out / "model.pt", cfg, raw.state_dict(), self.state["best_round"])
            write_json(self.out / "summary.json", summary)
            save_figures(self.out, self.rows, self.config.variant, self.val_cases, self.predict_crop, self.cache)
        return summary
