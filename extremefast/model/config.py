"""Training configuration and the paper's variants as switches of one configuration."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from ..defaults import CROP_SIZE, CT_WINDOW, PAD_MM, POINT_SIGMA, SELECTIONS, VARIANTS
from ..errors import InputError

@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    Sizes default to the paper's (128^3 crops, batch 4, 20 rounds); :func:`cpu_defaults`
    shrinks them so that the synthetic scheme runs on a laptop CPU in minutes.
    """

    variant: str = "f"
    rounds: int = 20
    patience: int = 3
    epochs_per_round: int = 20
    # round 1 learns from the random walker's labels, the largest step of the scheme (paper,
    # section 4); None: epochs_per_round like the others. On ct_sarcoma (f, CPU sizes) 30 epochs
    # in round 1 gave 0.773 against 0.772 with 10 (docs/history.md)
    first_round_epochs: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int = 4
    crop_size: int = CROP_SIZE
    learning_rate: float = 1e-3
    point_loss_weight: float = 0.1
    point_loss_filters: int = 25
    # training crops move the clicks by N(0, this) mm per axis (the paper's click simulation);
    # None: 2 mm for clicks made from masks, 0 for the annotator's clicks (--points): on
    # ct_sarcoma the clicks-only model scored 0.762 without it against 0.746 with it
    click_noise_mm: float | None = None
    point_sigma: float = POINT_SIGMA
    rw_radius: float = 4.0
    # the refresh also seeds the confident ridge of parts thinner than 2 rw_radius, which erosion
    # leaves seedless (pseudo.seeds.uncertainty_seeds); None: erosion alone, as the paper. The
    # mandible's training cases refreshed from one model: 0.819 -> 0.881 (docs/history.md)
    rw_ridge_seeds: float | None = 0.8
    rw_crop_size: int = CROP_SIZE
    rw_beta: float | None = None  # None: the pseudo-label preset's beta
    pseudo_preset: str = "default"
    window: tuple[float, float] | None = CT_WINDOW
    pad_mm: float = PAD_MM
    # the network's crop margin as a fraction of the clicks' box (mean extent over the axes, mm)
    # instead of pad_mm, so that a small organ fills as much of the crop as a large one (20 mm is
    # 0.2 of a 100 mm organ); None: pad_mm on every side, as the paper. CPU sizes use 0.2: ct_sarcoma,
    # f 0.800 -> 0.840 (the two smallest tumours had been filled out to the clicks' box), full
    # 0.816 -> 0.826; mandible and right parotid unchanged (docs/history.md)
    pad_fraction: float | None = None
    n_val: int | None = None
    # which block of n_val cases, in the seed's shuffled order, validates (data.train_val_split):
    # folds 0, 1, ... of one seed validate on every case of the collection once
    fold: int = 0
    held_back: float = 0.2
    seed: int = 0
    amp: bool = True
    compile: bool = False
    init_filters: int = 8
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)
    blocks_up: tuple[int, ...] = (1, 1, 1)
    max_cases: int | None = None
    # which round is kept: "masks" (validation masks) or "settle" (no mask: pseudo labels settle);
    # None: "settle" when the clicks come from points files, "masks" when they come from masks
    selection: str | None = None
    # "settle" stops at the first round whose labels changed by less than this (mean 1 - Dice);
    # on ct_sarcoma (variant f, CPU sizes) the changes were 0.28, 0.040 in rounds 1-2 from the clicks,
    # 0.29, 0.049, 0.048, 0.041, 0.057 with the masks (whose validation Dice rose 0.722 -> 0.734 meanwhile)
    settle_change: float = 0.05
    # "masks": a round replaces the kept one only when its mean validation Dice is higher by at
    # least this; the seed-to-seed spread of variant f on ct_sarcoma was 0.008 (docs/results), and
    # single rounds there moved by +-0.002-0.006 without a trend, so smaller gains are noise
    min_gain: float = 0.01
    # predictions (validation, refresh, annotate) are 0 outside the box the clicks span: they
    # are the organ's extreme points. ct_sarcoma's validation, variant f at CPU sizes: 0.740 -> 0.771
    clip_to_clicks: bool = True
    # predictions average the network's output with that of the scan mirrored left-right (axis 0
    # of the LPS-oriented grid; bodies are near-symmetric that way, not along the other axes).
    # Same model, with the clip: ct_sarcoma 0.771 -> 0.786, mandible 0.854 -> 0.852, right
    # parotid 0.786 -> 0.790; averaging all 8 axis flips gave the mandible 0.792
    mirror_average: bool = True
    # the refresh of variants that use the random walker averages each new label with the case's
    # round-0 walker label (pseudo.refine.average_with_walker), so that the rounds cannot drift
    # away from what the clicks alone give; False: the refreshed label alone, as the paper.
    # ct_sarcoma, f at CPU sizes, splits 0/1/2: 0.775/0.771/0.754 -> 0.800/0.783/0.802
    # (docs/history.md, "The walker beside the network")
    refresh_with_walker: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise InputError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.rounds < 1:
            raise InputError(f"rounds must be at least 1, got {self.rounds}")
        if self.crop_size < 16 or self.crop_size % 8:
            raise InputError(f"crop size must be a multiple of 8 and >= 16, got {self.crop_size}")
        if self.selection is not None and self.selection not in SELECTIONS:
            raise InputError(f"unknown round selection {self.selection!r}; choose one of {', '.join(SELECTIONS)}")
        if min(self.batch_size, self.epochs_per_round, self.round_one_epochs) < 1:
            raise InputError("batch size and epochs per round must be >= 1")
        if self.rw_ridge_seeds is not None and not 0.5 <= self.rw_ridge_seeds <= 1.0:
            raise InputError(f"rw_ridge_seeds must lie in [0.5, 1] or be None, got {self.rw_ridge_seeds}")
        if self.pad_fraction is not None and not 0 < self.pad_fraction <= 2:
            raise InputError(f"pad_fraction must lie in (0, 2] or be None, got {self.pad_fraction}")
        if self.fold < 0:
            raise InputError(f"fold must be >= 0, got {self.fold}")
        self.blocks_down = tuple(self.blocks_down)
        self.blocks_up = tuple(self.blocks_up)
        if self.window is not None:
            self.window = tuple(self.window)

    @property
    def switches(self) -> dict:
        return VARIANTS[self.variant]

    @property
    def refine_beta(self) -> float:
        """The random walker's beta for regularisation and refinement."""
        from ..pseudo.pseudo_label import get_preset

        return self.rw_beta or get_preset(self.pseudo_preset).beta

    @property
    def pseudo_label_settings(self):
        """The pseudo-label configuration of round 0 (the preset at this run's window), which
        also makes the walker's half of a prediction ``with_walker``."""
        from ..pseudo.pseudo_label import get_preset

        return get_preset(self.pseudo_preset).with_(window=self.window)

    @property
    def refine_settings(self) -> dict:
        """What the random walker of regularisation and refinement takes from this configuration:
        the keywords of :func:`~extremefast.pseudo.refine.refine_probabilities` but the device."""
        return dict(pad_mm=self.pad_mm, crop_size=self.rw_crop_size, radius=self.rw_radius, beta=self.refine_beta,
                    ridge_above=self.rw_ridge_seeds)

    def crop_margin_mm(self, points, spacing) -> float:
        """The margin (mm) around the clicks' box of the network's crop: ``pad_mm``, or
        ``pad_fraction`` times the box's mean extent."""
        if self.pad_fraction is None:
            return self.pad_mm
        points = np.asarray(points)
        extent = (points.max(axis=0) - points.min(axis=0) + 1) * np.asarray(spacing, dtype=np.float64)
        return float(self.pad_fraction * extent.mean())

    def epochs_of_round(self, rnd: int) -> int:
        """Epochs round ``rnd`` (from 1) trains; full supervision trains once, for the epochs
        all rounds of a weak variant would have."""
        if self.switches["full"]:
            return self.round_one_epochs + (self.rounds - 1) * self.epochs_per_round
        return self.round_one_epochs if rnd == 1 else self.epochs_per_round

    @property
    def round_one_epochs(self) -> int:
        return self.epochs_per_round if self.first_round_epochs is None else self.first_round_epochs

    @property
    def in_channels(self) -> int:
        return 2 if self.switches["point_channel"] else 1

    def with_(self, **kw) -> "TrainConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def default_config(variant: str = "f", *, cuda: bool, **settings) -> TrainConfig:
    """The configuration a run gets where the user chose no sizes: the paper's on a GPU,
    :func:`cpu_defaults` on a CPU (the command line and Python callers alike).

    Parameters
    ----------
    variant : str
        a-f (the paper's Table 1) or full.
    cuda : bool
        Whether the run has a GPU.
    **settings
        Other :class:`TrainConfig` fields.

    Returns
    -------
    TrainConfig
    """
    config = TrainConfig(variant=variant, **settings)
    return config if cuda else cpu_defaults(config)


def config_from_options(variant: str = "f", *, device: str = "auto", seed: int = 0, fold: int = 0,
                        select_on_masks: bool = False, pad_fraction: float | None = None,
                        **options) -> TrainConfig:
    """The configuration of a run from what a user chose (the command line's options): the
    defaults of the run's device (:func:`default_config`), with each option given replacing its
    field.

    Parameters
    ----------
    variant : str
    device : {"auto", "cpu", "cuda"}
        The paper's sizes where the run has a GPU ("auto" or "cuda" with one visible), the
        CPU sizes otherwise.
    seed, fold : int
    select_on_masks : bool
        Keep the round the validation masks prefer (selection "masks").
    pad_fraction : float, optional
        The network's crop margin as a fraction of the clicks' box; 0 means the paper's fixed
        margin (``pad_mm`` on every side).
    **options
        Other :class:`TrainConfig` fields (``rounds``, ``epochs_per_round``, ``crop_size``, ...);
        None leaves the default.

    Returns
    -------
    TrainConfig
    """
    import torch

    cuda = device != "cpu" and torch.cuda.is_available()
    overrides = {k: v for k, v in options.items() if v is not None}
    if select_on_masks:
        overrides["selection"] = "masks"
    if pad_fraction is not None:
        overrides["pad_fraction"] = pad_fraction or None  # 0: the fixed margin, pad_mm
    return default_config(variant, cuda=cuda, seed=seed, fold=fold).with_(**overrides)


def cpu_defaults(config: TrainConfig) -> TrainConfig:
    """Sizes for a 2-core CPU: small crops, a few short rounds (the phantoms in 3 minutes,
    ct_sarcoma's 19 training cases in 4).

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    TrainConfig
        ``config`` with the CPU sizes.
    """
    return config.with_(rounds=5, patience=2, epochs_per_round=10, steps_per_epoch=20, batch_size=2, crop_size=48, rw_crop_size=96,
                        point_loss_filters=6, point_sigma=1.5, amp=False, pad_fraction=0.2)


def describe_sizes(config: TrainConfig) -> str:
    """The sizes a run uses, in one line (printed when they were chosen for the user).

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    str
    """
    first = f" (the first {config.round_one_epochs})" if config.round_one_epochs != config.epochs_per_round else ""
    return (f"crop {config.crop_size}^3, batch {config.batch_size}, up to {config.rounds} rounds of "
            f"{config.epochs_per_round} epochs{first}"
            + (f" x {config.steps_per_epoch} steps" if config.steps_per_epoch else "")
            + f", random-walker crop {config.rw_crop_size}^3"
            + (f", crop margin {config.pad_fraction:g} of the clicks' box" if config.pad_fraction is not None
               else f", crop margin {config.pad_mm:g} mm"))
