"""The network in training: batches of crops, the loss, epochs, and its predictions."""
from __future__ import annotations

import numpy as np
import torch

from ..losses import point_loss
from ..losses.dice import dice_loss
from ..metrics import dice, summarise
from ..model import (TrainConfig, build_model, network_box, network_input, predict_probability, probability_on_image,
                     unwrap)
from ..model.network import crop_volumes
from ..pseudo.clicks import jitter_points
from ..pseudo.refine import average_with_walker
from ..pseudo.roi import Box, clicks_mask_in_crop
from .cases import CaseData


def canonical_box(case: CaseData, config: TrainConfig, points=None) -> Box:
    """The network's crop of ``case`` (:func:`~extremefast.model.network.network_box`), at its
    clicks or at ``points``."""
    return network_box(case.points if points is None else points, case.spacing, case.image.shape, config)


class Trainer:
    """The model, its optimiser and the cases it trains on (``fit_cases``) or selects epochs
    by (``held_back``: Dice against their pseudo labels, no real mask)."""

    def __init__(self, config: TrainConfig, runtime, fit_cases: list[CaseData], held_back: list[CaseData]):
        self.config, self.rt = config, runtime
        self.fit_cases, self.held_back = fit_cases, held_back
        self.model = build_model(config).to(runtime.device)
        if runtime.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            dev = runtime.device
            self.model = DDP(self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        # the training forward pass: compiled on CUDA where asked, else the model itself
        self._forward = (torch.compile(self.model) if config.compile and runtime.device.type == "cuda"
                         else self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self._tensors = {}

    @property
    def network(self) -> torch.nn.Module:
        """The network itself (its weights), under a DistributedDataParallel wrapper or not."""
        return unwrap(self.model)

    def forget_tensors(self):
        """Drop the cases' device copies (their pseudo labels have changed)."""
        self._tensors.clear()

    def case_tensor(self, case: CaseData) -> torch.Tensor:
        """(2, X, Y, Z) on the device: image and current pseudo label (or the real mask)."""
        target = case.mask.astype(np.float32) if self.config.switches["full"] else case.pseudo
        key = (case.name, id(target))
        if key not in self._tensors:
            self._tensors = {k: v for k, v in self._tensors.items() if k[0] != case.name}
            arr = np.stack([case.image, target]).astype(np.float32)
            self._tensors[key] = torch.from_numpy(arr).to(self.rt.device)
        return self._tensors[key]

    def batch(self, rng: np.random.Generator):
        cfg = self.config
        inputs, targets, pcs = [], [], []
        for _ in range(cfg.batch_size):
            case = self.fit_cases[int(rng.integers(len(self.fit_cases)))]
            noisy = jitter_points(case.points, case.spacing, cfg.click_noise_mm, rng, case.image.shape)
            box = canonical_box(case, cfg, noisy)
            x, target, pc = network_input(self.case_tensor(case), box, noisy, cfg)
            if rng.random() < 0.5:  # flip along the first axis: anatomy is roughly mirror-symmetric there
                x, target, pc = x.flip(1), target.flip(1), pc.flip(1)
            inputs.append(x)
            targets.append(target)
            pcs.append(pc)
        return torch.stack(inputs), torch.stack(targets), torch.stack(pcs)

    def loss(self, x, y, pc):
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
            x, y, pc = self.batch(rng)
            loss = self.loss(x, y, pc)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))

    @torch.no_grad()
    def predict_crop(self, case: CaseData, clip: bool = True) -> tuple[np.ndarray, Box, np.ndarray]:
        """The model's probability in the canonical crop, the box and the image crop.

        ``clip``: 0 at crop voxels outside the clicks' box (where ``config.clip_to_clicks``);
        :meth:`predict_image` clips on the image's own, finer grid instead.
        """
        box = canonical_box(case, self.config)
        x, _, _ = network_input(self.case_tensor(case), box, case.points, self.config)
        self.model.eval()
        use_amp = self.config.amp and self.rt.device.type == "cuda"
        with torch.autocast(device_type=self.rt.device.type, dtype=torch.bfloat16, enabled=use_amp):
            p = predict_probability(self.network, x, self.config).cpu().numpy()
        if clip and self.config.clip_to_clicks:
            p = p * clicks_mask_in_crop(box, case.points)
        return p, box, x[0].cpu().numpy()

    def predict_image(self, case: CaseData) -> np.ndarray:
        """The model's probability on the case's grid (float32), 0 outside the clicks' box where
        ``config.clip_to_clicks``."""
        p, box, _ = self.predict_crop(case, clip=False)
        return probability_on_image(p, box, case.points, self.config)

    def selection_score(self) -> float:
        """Dice against the pseudo labels of the held-back training cases (no real mask).

        The soft Dice (1e-3 weight) breaks ties, so that while every prediction is still
        below 0.5 (hard Dice 0) the better-trained epoch is kept rather than the first.
        """
        scores = []
        for case in self.held_back:
            p, box, _ = self.predict_crop(case)
            target = crop_volumes(self.case_tensor(case), box)[1].cpu().numpy()
            soft = 2.0 * float((p * target).sum()) / (float((p * p).sum() + (target * target).sum()) + 1e-6)
            scores.append(dice(p, target) + 1e-3 * soft)
        return float(np.mean(scores))

    def validate(self, cases: list[CaseData]) -> tuple[dict, dict]:
        """Dice of the model against the real masks of ``cases`` that have one, and of the model
        averaged with the case's round-0 random-walker label (``case.pseudo``; validation
        cases are never refreshed), as ``predict --with-walker`` gives."""
        alone, with_walker = [], []
        for case in cases:
            if case.mask is None:
                continue
            prob = self.predict_image(case)
            alone.append(dice(prob, case.mask))
            with_walker.append(dice(average_with_walker(prob, case.pseudo), case.mask))
        return summarise(alone), summarise(with_walker)
