"""The ``extremefast`` command: thin commands that parse, call the library and render.

Known errors (:class:`extremefast.ExtremefastError`, and operating-system errors on user
files) become one line on stderr and exit code 1; ``--debug`` or EXTREMEFAST_DEBUG=1 shows
the traceback instead.
"""
from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from extremefast import __version__
from extremefast.defaults import CROP_SIZE, VARIANTS
from extremefast.imageio import OUTPUT_FORMATS
from extremefast.pseudo.pseudo_label import PRESETS
from extremefast.errors import ExtremefastError

app = typer.Typer(name="extremefast", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Weakly supervised 3D segmentation from six extreme-point clicks, fast.")
data_app = typer.Typer(no_args_is_help=True, help="Create, inspect and validate data sets.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


def _debug_requested(argv) -> bool:
    """The one rule for debug mode: ``--debug`` anywhere, or EXTREMEFAST_DEBUG set (not 0)."""
    return "--debug" in argv or os.environ.get("EXTREMEFAST_DEBUG", "") not in ("", "0")


# the choices of --variant, --preset and --format, from the library's own tables
Variant = Enum("Variant", {v: v for v in VARIANTS}, type=str)
Preset = Enum("Preset", {p: p for p in PRESETS}, type=str)
OutputFormat = Enum("OutputFormat", {f: f for f in OUTPUT_FORMATS}, type=str)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Space(str, Enum):
    voxel = "voxel"
    RAS = "RAS"
    LPS = "LPS"



DataOpt = Annotated[str, typer.Option("--data", help="A data folder (MSD layout, or with --points a plain folder of scans), a known name (msd_spleen) or 'synthetic'.")]
ResumeOpt = Annotated[bool, typer.Option("--resume/--no-resume", help="Keep what an earlier run in --out finished "
                                                                  "(--no-resume: make everything afresh).")]
DataRootOpt = Annotated[Optional[Path], typer.Option("--data-root", help="Where known data sets live (else $EXTREMEFAST_DATA_ROOT).")]
LabelOpt = Annotated[Optional[int], typer.Option("--label", help="The organ's label value in the label maps.")]
OrganOpt = Annotated[Optional[str], typer.Option("--organ", help="The organ's name as dataset.json gives it, e.g. spleen.")]
ClicksOpt = Annotated[Optional[Path], typer.Option(
    "--points", help="A folder of the annotator's clicks, CASE.mrk.json (3D Slicer) or CASE.json per scan: "
                     "then no mask is needed, and masks, where there are any, only give Dice.")]
SelectOpt = Annotated[bool, typer.Option(
    "--select-on-masks", help="With --points: keep the round the validation masks prefer (default: the round "
                              "in which the pseudo labels settle, no mask used).")]


def _version(value: bool):
    if value:
        console.print(f"extremefast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
):
    # --debug is declared here so that it parses and shows in --help; main() reads it (with
    # EXTREMEFAST_DEBUG) before any command runs: one rule, _debug_requested
    del debug


@app.command()
def env():
    """Versions and which backends are available (numba, pyamg, triton, cupy, CUDA extension, GPU)."""
    from extremefast.environment import environment_report

    for key, value in environment_report().items():
        console.print(f"{key:>22}: {value}")


@data_app.command("synthetic")
def data_synthetic(
    out: Annotated[Path, typer.Option("--out", help="Folder to create (MSD layout).")],
    cases: Annotated[int, typer.Option("--cases", min=1, help="How many phantoms.")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Picks the phantoms; the same seed gives the same files.")] = 0,
):
    """Write deterministic CT-like abdominal phantoms as an MSD-layout data set."""
    from rich.progress import Progress

    from extremefast.data.synthetic import write_synthetic_dataset

    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("phantoms", total=cases)
        write_synthetic_dataset(out, cases=cases, seed=seed, progress=lambda: bar.advance(task))
    console.print(f"wrote {cases} phantoms to {out}")


@data_app.command("info")
def data_info(
    data: DataOpt,
    data_root: DataRootOpt = None,
):
    """List the cases, shapes, spacings and voxels per label; fails on any unreadable case."""
    from rich.table import Table

    from extremefast.data import open_dataset
    from extremefast.data.info import dataset_info

    ds = open_dataset(data, data_root=data_root)
    info = dataset_info(ds)
    table = Table(title=f"{ds.name} ({ds.root}), {len(ds)} cases, {ds.modality}")
    for col in ("case", "shape", "spacing (mm)", "voxels per label"):
        table.add_column(col)
    for row in info["cases"]:
        counts = ", ".join(f"{ds.organ_name(k)}={v}" for k, v in row["label_voxels"].items())
        table.add_row(row["case"], "x".join(map(str, row["shape"])),
                      " x ".join(f"{s:.2f}" for s in row["spacing"]), counts)
    console.print(table)
    console.print("dataset is valid")


@app.command("pseudo-label")
def pseudo_label(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    label: LabelOpt = None,
    organ: OrganOpt = None,
    data_root: DataRootOpt = None,
    preset: Annotated[Preset, typer.Option("--preset", help="'default' (measured best) or 'paper' (the paper's settings).")] = Preset("default"),
    crop_size: Annotated[int, typer.Option("--crop-size", min=16, help=f"Crop edge in voxels (the paper: {CROP_SIZE}).")] = CROP_SIZE,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Parallel cases (default: one per core).")] = None,
    click_noise: Annotated[float, typer.Option("--click-noise", min=0.0, help="Simulated click noise, mm (0: exact extreme points).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the click noise.")] = 0,
    points: ClicksOpt = None,
    resume: ResumeOpt = True,
):
    """Random-walker pseudo labels from six clicks for every case (clicks from --points or from
    the masks), Dice against the masks where there are masks; a contact sheet of all cases."""
    from rich.progress import Progress

    from extremefast.data import open_dataset
    from extremefast.pseudo import get_preset
    from extremefast.pseudo.runner import run_pseudo_labels, summary_table
    from extremefast.data.points import pair_clicks

    ds = open_dataset(data, data_root=data_root)
    paired, without = pair_clicks(ds, points, console.print)
    value = ds.organ_label(label, organ, clicks_given=points is not None)
    config = get_preset(preset.value, crop_size=(crop_size,) * 3)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("pseudo labels", total=len(ds))
        summary = run_pseudo_labels(ds, value, out, config, workers=workers, click_noise_mm=click_noise, seed=seed,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                                    points=paired, without_points=without, resume=resume)
    console.print(summary_table(summary))
    console.print(f"summary: {out / 'summary.json'}, contact sheet: {out / 'contact_sheet.png'}")
    skipped = [r for r in summary["cases"] if "skipped" in r]
    if len(skipped) == len(summary["cases"]):
        reasons = "; ".join(f"{r['case']}: {r['skipped']}" for r in skipped[:3])
        raise ExtremefastError(f"no pseudo label was made ({len(skipped)} case(s) skipped: {reasons})")


RoundsOpt = Annotated[Optional[int], typer.Option("--rounds", min=1, help="Most rounds of train + refresh (the paper: 20).")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs per round.")]
CropOpt = Annotated[Optional[int], typer.Option("--crop-size", min=16, help="Network crop edge in voxels (the paper: 128).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Crops per step (the paper: 4).")]
AmpOpt = Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA.")]
CompileOpt = Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the network on CUDA.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the split, the click noise and the initialisation.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where to run: a GPU when one is visible (auto), or as named.")]
TrainCasesOpt = Annotated[Optional[int], typer.Option(
    "--train-cases", min=2, help="Train on at most this many of the training cases (the validation split is unchanged).")]
AlphaOpt = Annotated[Optional[float], typer.Option("--point-loss-weight", help="alpha of L = Dice + alpha L_points.")]
PadOpt = Annotated[Optional[float], typer.Option(
    "--pad-fraction", min=0.0, max=2.0,
    help="The network's crop margin as a fraction of the clicks' box; 0: 20 mm on every side, as the paper.")]
FoldOpt = Annotated[int, typer.Option(
    "--fold", min=0,
    help="Which block of the seed's shuffled cases validates: folds 0, 1, ... validate on every case once.")]
RefreshOpt = Annotated[Optional[bool], typer.Option(
    "--refresh-with-walker/--paper-refresh",
    help="Average each refreshed pseudo label with the round-0 walker label (default), or refresh as the paper does.")]


@app.command()
def train(  # long for its 24 options, one line each; the body parses, calls run.train and renders
    out: Annotated[Path, typer.Option("--out", help="Output folder: summary.json, plots, overlays, model.pt.")],
    data: DataOpt = "synthetic",
    label: LabelOpt = None,
    organ: OrganOpt = None,
    variant: Annotated[Variant, typer.Option("--variant", help="The paper's Table 1 variants, or full supervision.")] = Variant("f"),
    rounds: RoundsOpt = None,
    epochs: EpochsOpt = None,
    crop_size: CropOpt = None,
    batch_size: BatchOpt = None,
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="Processes with DistributedDataParallel (NCCL on GPUs; gloo and CPU processes where no GPU is visible).")] = 1,
    amp: AmpOpt = None,
    compile_: CompileOpt = None,
    point_loss_weight: AlphaOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    data_root: DataRootOpt = None,
    points: ClicksOpt = None,
    select_on_masks: SelectOpt = False,
    train_cases: TrainCasesOpt = None,
    refresh_with_walker: RefreshOpt = None,
    pad_fraction: PadOpt = None,
    fold: FoldOpt = 0,
):
    """The iterative weakly supervised scheme: random-walker init, then rounds of training and refresh."""
    from rich.progress import BarColumn, Progress, TextColumn

    from extremefast.model import config_from_options, describe_sizes
    from extremefast.train.run import train_distributed
    from extremefast.train.run import train as run_train

    device = device.value
    config = config_from_options(variant.value, device=device, rounds=rounds, epochs_per_round=epochs,
                                 crop_size=crop_size, batch_size=batch_size, amp=amp, compile=compile_, seed=seed,
                                 point_loss_weight=point_loss_weight, select_on_masks=select_on_masks,
                                 max_cases=train_cases, refresh_with_walker=refresh_with_walker,
                                 pad_fraction=pad_fraction, fold=fold)
    console.print(f"settings: {describe_sizes(config)}", highlight=False)
    kwargs = dict(data=data, label=label, organ=organ, out=out, config=config, data_root=data_root, device=device,
                  resume=resume, points=points)
    if gpus > 1 or "WORLD_SIZE" in os.environ:
        summary = train_distributed(gpus, log=console.print, **kwargs)
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                      console=err_console, transient=True) as bar:
            task = bar.add_task("training", total=config.epochs_of_round(1), info="")

            def progress(rnd, epoch, loss, score):
                bar.update(task, description=f"round {rnd}", completed=epoch, total=config.epochs_of_round(rnd),
                           info=f"loss {loss:.3f}, selection Dice {score:.3f}")

            summary = run_train(log=console.print, progress=progress, **kwargs)
    final = summary["final_val_dice"]
    rule = "pseudo labels settled" if summary["selection"] == "settle" else "best validation Dice"
    score = (f"validation Dice {final['mean']:.3f}±{final['std']:.3f} (median {final['median']:.3f}, "
             f"{final['n']} masks)" if final["n"] else "no validation masks")
    both = summary.get("final_val_dice_with_walker")
    if final["n"] and both:
        score += f"; with the walker at prediction {both['mean']:.3f}"
    console.print(f"kept round {summary['best_round']} ({rule}): {score}; outputs in {out}")


@app.command()
def ablation(
    out: Annotated[Path, typer.Option("--out", help="Folder for one run per variant and table.md / table.json.")],
    data: DataOpt = "synthetic",
    label: LabelOpt = None,
    organ: OrganOpt = None,
    variants: Annotated[str, typer.Option("--variants", help=f"Comma-separated: {','.join(VARIANTS)}.")] = ",".join(VARIANTS),
    rounds: RoundsOpt = None,
    epochs: EpochsOpt = None,
    crop_size: CropOpt = None,
    batch_size: BatchOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    data_root: DataRootOpt = None,
    points: ClicksOpt = None,
    select_on_masks: SelectOpt = False,
    resume: ResumeOpt = True,
    train_cases: TrainCasesOpt = None,
    refresh_with_walker: RefreshOpt = None,
    pad_fraction: PadOpt = None,
    fold: FoldOpt = 0,
):
    """Run several variants on the same data and write the paper's Table 1 for them."""
    from extremefast.model import config_from_options
    from extremefast.train.ablation import run_ablation

    names = [v.strip() for v in variants.split(",") if v.strip()]
    def config(v):
        return config_from_options(v, device=device.value, rounds=rounds, epochs_per_round=epochs, crop_size=crop_size,
                                   batch_size=batch_size, seed=seed, select_on_masks=select_on_masks,
                                   max_cases=train_cases, refresh_with_walker=refresh_with_walker,
                                   pad_fraction=pad_fraction, fold=fold)

    table = run_ablation(names, out, config,
                         data=data, label=label, organ=organ, data_root=data_root, device=device.value,
                         log=console.print,
                         points=points, resume=resume)
    console.print(table)


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="model.pt written by `extremefast train`.")],
    image: Annotated[Path, typer.Option("--image", help="A scan (NIfTI, NRRD, MetaImage, or a DICOM-series folder), "
                                                        "or a folder of scans (folder mode).")],
    points: Annotated[Path, typer.Option("--points", help="Its six clicks (voxel/RAS/LPS JSON or Slicer .mrk.json), "
                                                          "or a folder holding <scan name>.json / .mrk.json.")],
    out: Annotated[Path, typer.Option("--out", help="Output file (its name picks the format: .nii.gz, .nrrd, "
                                                    ".seg.nrrd for 3D Slicer, .mha), or a folder in folder mode.")],
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Folder mode: the outputs' format ('input': the scan's "
                                                               "own; NIfTI for DICOM).")] = OutputFormat("nii.gz"),
    refine: Annotated[bool, typer.Option("--refine", help="Regularise with the random walker on the uncertainty band.")] = False,
    with_walker: Annotated[bool, typer.Option("--with-walker", help="Average with the random walker's pseudo label "
                                                                    "from the same clicks (better Dice on every real "
                                                                    "collection measured; seconds more per scan).")] = False,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Write float probabilities instead of a 0/1 mask.")] = False,
    organ: Annotated[str, typer.Option("--organ", help="The segment's name in .seg.nrrd outputs.")] = "organ",
    device: DeviceOpt = Device.auto,
):
    """Segment new scans from six clicks; each result lies on its scan's grid (shape and geometry)."""
    from rich.progress import Progress

    from extremefast.predict import Predictor
    from extremefast.predict.cli_support import plan_predictions, run_predictions

    jobs = plan_predictions(image, points, out, fmt.value)
    predictor = Predictor.from_checkpoint(checkpoint, device.value)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("predict", total=len(jobs))

        def done(img, dst):
            bar.advance(task)
            console.print(f"{img.name} -> {dst}", highlight=False)

        run_predictions(predictor, jobs, out, refine=refine, with_walker=with_walker, probabilities=probabilities,
                        organ=organ, progress=done)
    if out.is_dir():
        console.print(f"summary: {out / 'summary.json'}, contact sheet: {out / 'contact_sheet.png'}", highlight=False)


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Option("--pred", help="Folder of predictions named <case>.nii.gz (or .nrrd, .seg.nrrd, .mha).")],
    data: DataOpt,
    label: LabelOpt = None,
    organ: OrganOpt = None,
    data_root: DataRootOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="JSON file to write (default: PRED/evaluation.json).")] = None,
):
    """Dice, 95% Hausdorff distance (mm) and volume difference per case and summarised."""
    from extremefast.data import open_dataset
    from extremefast.jsonio import write_json
    from extremefast.predict.evaluate import evaluate as run_evaluate, format_table

    ds = open_dataset(data, data_root=data_root)
    result = run_evaluate(pred, ds, ds.resolve_label(label, organ))
    console.print(format_table(result), highlight=False)
    dst = out or pred / "evaluation.json"
    write_json(dst, result)
    console.print(f"wrote {dst}")


@app.command()
def points(
    labels: Annotated[Path, typer.Option("--labels", help="A label map (NIfTI, NRRD, .seg.nrrd, MetaImage) holding the organ.")],
    label: Annotated[int, typer.Option("--label", help="The organ's label value.")],
    out: Annotated[Path, typer.Option("--out", help="The points file to write.")],
    space: Annotated[Space, typer.Option("--space", help="The coordinates of the file: voxel indices or world mm.")] = Space.RAS,
    slicer: Annotated[bool, typer.Option("--slicer", help="Write a 3D Slicer markups file (.mrk.json).")] = False,
):
    """Write a mask's six extreme points as a points file (to try `predict` on labelled scans)."""
    from extremefast.errors import InputError
    from extremefast.imageio import load_image
    from extremefast.predict import write_points
    from extremefast.pseudo import extreme_points

    volume = load_image(labels, dtype=None)
    mask = volume.array == label
    if not mask.any():
        raise InputError(f"{labels}: label {label} is absent")
    write_points(out, extreme_points(mask), volume.affine, space.value, slicer=slicer)
    console.print(f"wrote {out}")


@app.command("convert-checkpoint")
def convert_checkpoint(
    source: Annotated[Path, typer.Argument(help="A model.pt or state.pt written before data-only checkpoints.")],
    target: Annotated[Path, typer.Argument(help="Where to write it in the current format (may be SOURCE).")],
):
    """Rewrite an older checkpoint as data only (read without running anything in it; same weights)."""
    from extremefast.model import convert_checkpoint as convert

    console.print(f"wrote {convert(source, target)}", highlight=False)


@app.command()
def serve(
    data: Annotated[Path, typer.Option("--data", help="The collection: a folder of scans (or an MSD layout); clicks "
                                                      "and accepted masks are saved beside the scans.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind; another than loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[Optional[str], typer.Option("--token", envvar="EXTREMEFAST_TOKEN",
                                                 help="Require 'Authorization: Bearer TOKEN' on every request.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=1, help="Largest scan or label upload.")] = 1024,
    device: DeviceOpt = Device.cpu,
):
    """Serve the collection to 3D Slicer (MONAI Label's protocol) and a browser page: six clicks -> a mask."""
    from extremefast.serve.cli_support import run_server

    run_server(data, host=host, port=port, token=token, max_upload_mb=max_upload_mb, device=device.value,
               announce=lambda url: console.print(f"extremefast serve: {url}  (data: {data})", highlight=False))


def main(argv=None) -> int:
    """Run the command line; returns the exit code (0, 1 for known errors, 2 for usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    try:
        app(args=argv, prog_name="extremefast")
    except SystemExit as exc:  # the command line's own exit (success, --help, usage errors)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        err_console.print("extremefast: interrupted")
        return 130
    except ExtremefastError as exc:
        if debug:
            raise
        err_console.print(f"extremefast: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 1
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        err_console.print(f"extremefast: error: {where}{exc.strerror or exc}", highlight=False, markup=False,
                          soft_wrap=True)
        return 1
    return 0
