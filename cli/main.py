"""The ``extremefast`` command: thin commands that parse, call the library and render.

Known errors (:class:`extremefast.ExtremefastError`, and operating-system errors on user
files) become one line on stderr and exit code 1; ``--debug`` or EXTREMEFAST_DEBUG=1 shows
the traceback instead.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from extremefast import __version__
from extremefast.errors import ExtremefastError

app = typer.Typer(name="extremefast", no_args_is_help=True, add_completion=False,
                  help="Weakly supervised 3D segmentation from six extreme-point clicks, fast.")
data_app = typer.Typer(no_args_is_help=True, help="Create, inspect and validate data sets.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)
_state = {"debug": os.environ.get("EXTREMEFAST_DEBUG", "") not in ("", "0")}

DataOpt = Annotated[str, typer.Option("--data", help="A data folder (MSD layout), a known name (msd_spleen) or 'synthetic'.")]
DataRootOpt = Annotated[Optional[Path], typer.Option("--data-root", help="Where known data sets live (else $EXTREMEFAST_DATA_ROOT).")]
LabelOpt = Annotated[Optional[int], typer.Option("--label", help="The organ's label value in the label maps.")]
OrganOpt = Annotated[Optional[str], typer.Option("--organ", help="The organ's name as dataset.json gives it, e.g. spleen.")]


def _version(value: bool):
    if value:
        console.print(f"extremefast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
):
    if debug:
        _state["debug"] = True


@app.command()
def env():
    """Versions and which backends are available (numba, pyamg, triton, cupy, CUDA extension, GPU)."""
    from extremefast.environment import environment_report

    for key, value in environment_report().items():
        console.print(f"{key:>22}: {value}")


@data_app.command("synthetic")
def data_synthetic(
    out: Annotated[Path, typer.Option("--out", help="Folder to create (MSD layout).")],
    cases: Annotated[int, typer.Option("--cases", help="How many phantoms.")] = 12,
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
    data: Annotated[str, typer.Argument(help="A data folder, a known name or 'synthetic'.")],
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
    out: Annotated[Path, typer.Option("--out", help="Output folder; rerunning resumes.")],
    label: LabelOpt = None,
    organ: OrganOpt = None,
    data_root: DataRootOpt = None,
    preset: Annotated[str, typer.Option("--preset", help="'default' (measured best) or 'paper' (the paper's settings).")] = "default",
    crop_size: Annotated[int, typer.Option("--crop-size", help="Crop edge in voxels (the paper: 128).")] = 128,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Parallel cases (default: one per core).")] = None,
    click_noise: Annotated[float, typer.Option("--click-noise", help="Simulated click noise, mm (0: exact extreme points).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the click noise.")] = 0,
):
    """Random-walker pseudo labels from six clicks for every case, Dice against the masks."""
    from rich.progress import Progress

    from extremefast.data import open_dataset
    from extremefast.pseudo import get_preset
    from extremefast.pseudo.runner import run_pseudo_labels, summary_table

    ds = open_dataset(data, data_root=data_root)
    value = ds.resolve_label(label, organ)
    config = get_preset(preset, crop_size=(crop_size,) * 3)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("pseudo labels", total=len(ds))
        summary = run_pseudo_labels(ds, value, out, config, workers=workers, click_noise_mm=click_noise, seed=seed,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(summary_table(summary))
    console.print(f"summary: {out / 'summary.json'}")


def main(argv=None) -> int:
    import click

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:
        _state["debug"] = True
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="extremefast", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        err_console.print("extremefast: interrupted")
        return 130
    except ExtremefastError as exc:
        if _state["debug"]:
            raise
        err_console.print(f"extremefast: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 1
    except OSError as exc:
        if _state["debug"]:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        err_console.print(f"extremefast: error: {where}{exc.strerror or exc}", highlight=False, markup=False,
                          soft_wrap=True)
        return 1
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
