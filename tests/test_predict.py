"""Annotating unseen scans: points files, prediction in image space, evaluation, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from extremefast.errors import DataError, InputError
from extremefast.metrics import dice, hausdorff95, volume_difference
from extremefast.nifti import load_nifti
from extremefast.predict import Predictor, annotate, predict_file, read_points, voxel_to_world, write_points
from extremefast.pseudo import extreme_points

from conftest import SMALL_PHANTOM_SHAPE, SMALL_PHANTOM_SPACING

SPLEEN = 1
# a short training run on small phantoms: enough for the organ to be found
QUICK = dict(rounds=1, patience=5, epochs_per_round=6, steps_per_epoch=8, batch_size=2, crop_size=32,
             rw_crop_size=48, point_loss_filters=6, point_sigma=1.5, amp=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from extremefast.data.synthetic import write_synthetic_dataset
    from extremefast.model import TrainConfig
    from extremefast.train.run import train

    root = tmp_path_factory.mktemp("predict")
    ds = write_synthetic_dataset(root / "train", cases=6, seed=9, shape=SMALL_PHANTOM_SHAPE,
                                 spacing=SMALL_PHANTOM_SPACING)
    train(str(ds), None, "spleen", root / "run", TrainConfig(variant="f", **QUICK), device="cpu", log=lambda *_: None)
    return root / "run" / "model.pt"


@pytest.fixture(scope="module")
def unseen(tmp_path_factory) -> Path:
    """Phantoms of another seed than the training ones."""
    from extremefast.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("unseen") / "ds", cases=2, seed=31,
                                   shape=SMALL_PHANTOM_SHAPE, spacing=SMALL_PHANTOM_SPACING)


def _rotated_affine():
    """An oblique, flipped affine with an origin: what a scanner may write."""
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([-0.8, 0.9, 2.5])
    affine = np.eye(4)
    affine[:3, :3] = rot
    affine[:3, 3] = [120.5, -33.0, 410.25]
    return affine


@pytest.mark.parametrize("space,slicer", [("voxel", False), ("RAS", False), ("LPS", False), ("RAS", True), ("LPS", True)])
def test_points_file_round_trip(tmp_path, space, slicer):
    pts = np.array([[3, 10, 4], [40, 12, 5], [20, 1, 6], [21, 30, 7], [22, 15, 0], [23, 16, 11]])
    path = write_points(tmp_path / ("p.mrk.json" if slicer else "p.json"), pts, _rotated_affine(), space, slicer=slicer)
    np.testing.assert_array_equal(read_points(path, _rotated_affine(), (50, 40, 12)), pts)


def test_world_points_land_on_the_right_voxel_of_real_scans(shared_data, tmp_path):
    scans = sorted(shared_data.glob("*/labelsTr/*.nii*"))
    assert scans
    for label_path in scans:
        volume = load_nifti(label_path, dtype=None)
        labels = volume.array
        value = int(np.unique(labels[labels > 0])[0])
        pts = extreme_points(labels == value)
        world = voxel_to_world(pts, volume.affine, "RAS")
        # RAS is the NIfTI affine itself; LPS negates x and y
        np.testing.assert_allclose(world, (volume.affine @ np.c_[pts, np.ones(6)].T).T[:, :3])
        np.testing.assert_allclose(voxel_to_world(pts, volume.affine, "LPS"), world * [-1, -1, 1])
        for space in ("RAS", "LPS"):
            for slicer in (False, True):
                f = write_points(tmp_path / f"{space}{slicer}.mrk.json", pts, volume.affine, space, slicer=slicer)
                np.testing.assert_array_equal(read_points(f, volume.affine, volume.shape), pts,
                                              err_msg=f"{label_path.name} {space} slicer={slicer}")


def test_slicer_file_as_slicer_writes_it(tmp_path):
    affine = _rotated_affine()
    pts = np.array([[3, 10, 4], [40, 12, 5], [20, 1, 6], [21, 30, 7], [22, 15, 0], [23, 16, 11]])
    lps = voxel_to_world(pts, affine, "LPS")
    doc = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                      "Schema/markups-schema-v1.0.3.json#",
           "markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": False,
                        "controlPoints": [{"id": str(i), "label": f"F-{i}", "position": p.tolist(),
                                           "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
                                           "selected": True, "locked": False, "visibility": True,
                                           "positionStatus": "defined"} for i, p in enumerate(lps)],
                        "measurements": [], "display": {"visibility": True}}]}
    f = tmp_path / "F.mrk.json"
    f.write_text(json.dumps(doc))
    np.testing.assert_array_equal(read_points(f, affine, (50, 40, 12)), pts)
    del doc["markups"][0]["coordinateSystem"]  # files without it are LPS
    f.write_text(json.dumps(doc))
    np.testing.assert_array_equal(read_points(f, affine, (50, 40, 12)), pts)


@pytest.mark.parametrize("content,message", [
    ('{"space": "voxel", "points": [[1, 2, 3]]}', "six 3D points"),
    ('{"space": "voxel", "points": [[1, 2, 3], [4, 5, 6], [1, 2, 3], [4, 5, 6], [1, 2, 3], [400, 5, 6]]}', "outside"),
    ('{"space": "IJK", "points": []}', "unknown coordinate space"),
    ('{"space": "voxel", "points": [[1, 2, "a"], [4, 5, 6], [1, 2, 3], [4, 5, 6], [1, 2, 3], [4, 5, 6]]}', "numbers"),
    ('{"space": "RAS"', "not a readable JSON"),
    ('{"markups": [{"coordinateSystem": "XYZ", "controlPoints": []}]}', "coordinateSystem"),
    ('{"markups": []}', "no markup"),
    ('[1, 2, 3]', "expected"),
    ('{"space": "voxel", "points": [[1, 2, NaN], [4, 5, 6], [1, 2, 3], [4, 5, 6], [1, 2, 3], [4, 5, 6]]}', "NaN"),
])
def test_bad_points_files(tmp_path, content, message):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises((InputError, DataError), match=message) as info:
        read_points(f, np.eye(4), (50, 40, 12))
    assert "\n" not in str(info.value) and str(f) in str(info.value)


def test_predictions_from_three_point_forms_agree_and_keep_the_grid(trained, unseen, tmp_path):
    predictor = Predictor.from_checkpoint(trained)
    scores = []
    for image_path in sorted((unseen / "imagesTr").glob("*.nii.gz")):
        volume = load_nifti(image_path)
        truth = load_nifti(unseen / "labelsTr" / image_path.name, dtype=None).array == SPLEEN
        pts = extreme_points(truth)
        files = [write_points(tmp_path / "v.json", pts),
                 write_points(tmp_path / "r.json", pts, volume.affine, "RAS"),
                 write_points(tmp_path / "l.mrk.json", pts, volume.affine, "LPS", slicer=True)]
        masks = []
        for i, f in enumerate(files):
            out = predict_file(predictor, image_path, f, tmp_path / f"out{i}.nii.gz")
            written = load_nifti(out, dtype=None)
            assert written.shape == volume.shape
            np.testing.assert_array_equal(written.affine, volume.affine)
            masks.append(written.array)
        np.testing.assert_array_equal(masks[0], masks[1])
        np.testing.assert_array_equal(masks[0], masks[2])
        # the in-memory call gives the same mask
        np.testing.assert_array_equal(annotate(volume.array, pts, predictor, affine=volume.affine), masks[0])
        scores.append(dice(masks[0], truth))
    assert np.mean(scores) > 0.5, scores


def test_cli_predict_folder_mode_evaluate_and_refine(trained, unseen, tmp_path, cli):
    points_dir = tmp_path / "points"
    points_dir.mkdir()
    for label_path in sorted((unseen / "labelsTr").glob("*.nii.gz")):
        name = label_path.name[: -len(".nii.gz")]
        code, _, err = cli("points", "--labels", label_path, "--label", SPLEEN, "--out", points_dir / f"{name}.json")
        assert code == 0, err
    code, out, err = cli("predict", "--checkpoint", trained, "--image", unseen / "imagesTr", "--points", points_dir,
                         "--out", tmp_path / "pred", "--refine", "--device", "cpu")
    assert code == 0, err
    preds = sorted((tmp_path / "pred").glob("*.nii.gz"))
    assert len(preds) == 2
    code, out, err = cli("evaluate", "--pred", tmp_path / "pred", "--data", unseen, "--organ", "spleen")
    assert code == 0, err
    result = json.loads((tmp_path / "pred" / "evaluation.json").read_text())
    assert {r["case"] for r in result["cases"]} == {p.name[: -len(".nii.gz")] for p in preds}
    for r in result["cases"]:
        pred = load_nifti(tmp_path / "pred" / f"{r['case']}.nii.gz", dtype=None)
        truth = load_nifti(unseen / "labelsTr" / f"{r['case']}.nii.gz", dtype=None).array == SPLEEN
        assert r["dice"] == pytest.approx(dice(pred.array, truth))
        assert r["hd95_mm"] >= 0
    assert set(result["dice"]) >= {"mean", "std", "median"}
    assert "mean±std" in out


def test_probabilities_output(trained, unseen, tmp_path, cli):
    image = sorted((unseen / "imagesTr").glob("*.nii.gz"))[0]
    cli("points", "--labels", unseen / "labelsTr" / image.name, "--label", SPLEEN, "--out", tmp_path / "p.mrk.json",
        "--space", "LPS", "--slicer")
    code, _, err = cli("predict", "--checkpoint", trained, "--image", image, "--points", tmp_path / "p.mrk.json",
                       "--out", tmp_path / "prob.nii.gz", "--probabilities", "--device", "cpu")
    assert code == 0, err
    prob = load_nifti(tmp_path / "prob.nii.gz").array
    assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1 and 0 < prob.max()


def test_bad_checkpoints_and_inputs(trained, unseen, tmp_path, cli):
    image = sorted((unseen / "imagesTr").glob("*.nii.gz"))[0]
    pts = tmp_path / "p.json"
    cli("points", "--labels", unseen / "labelsTr" / image.name, "--label", SPLEEN, "--out", pts)
    data = trained.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    ckpt = torch.load(trained, weights_only=False)
    ckpt["format"] = 999
    torch.save(ckpt, tmp_path / "future.pt")
    (tmp_path / "points5.json").write_text('{"space": "voxel", "points": [[1, 2, 3]]}')
    out = tmp_path / "mask.nii.gz"
    cases = [
        (tmp_path / "truncated.pt", pts, "not a readable extremefast checkpoint"),
        (tmp_path / "foreign.pt", pts, "not an extremefast checkpoint"),
        (tmp_path / "future.pt", pts, "incompatible"),
        (tmp_path / "missing.pt", pts, "not found"),
        (trained, tmp_path / "points5.json", "six 3D points"),
        (trained, tmp_path / "nope.json", "not found"),
    ]
    for ckpt_path, points_path, message in cases:
        code, _, err = cli("predict", "--checkpoint", ckpt_path, "--image", image, "--points", points_path,
                           "--out", out, "--device", "cpu")
        assert code == 1 and message in err and "Traceback" not in err, (ckpt_path, err)
        assert len(err.strip().splitlines()) == 1
        assert not out.exists()
    predictor = Predictor.from_checkpoint(trained)
    volume = load_nifti(image)
    with pytest.raises(InputError, match="NaN"):
        bad = volume.array.copy()
        bad[0, 0, 0] = np.nan
        predictor.predict(bad, np.zeros((6, 3)), spacing=(1, 1, 1))
    with pytest.raises(InputError, match="spacing"):
        predictor.predict(volume.array, np.zeros((6, 3)), spacing=(1, 0, 1))


def test_hausdorff95_and_volume_difference_on_known_shapes():
    a = np.zeros((30, 30, 30), bool)
    b = np.zeros_like(a)
    a[5:15, 5:15, 5:15] = True
    b[8:18, 5:15, 5:15] = True  # shifted 3 voxels along axis 0
    assert hausdorff95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hausdorff95(a, a) == 0.0
    assert np.isnan(hausdorff95(a, np.zeros_like(a)))
    dv, pct = volume_difference(b[:, :, :10], a[:, :, :10], spacing=(2.0, 1.0, 1.0))
    assert dv == pytest.approx(0.0) and pct == pytest.approx(0.0)
    dv, pct = volume_difference(a, np.zeros_like(a) | a | b, spacing=(1.0, 1.0, 1.0))
    assert dv == pytest.approx(-0.3) and pct == pytest.approx(-100 * 300 / 1300)


def test_hausdorff95_matches_monai():
    monai_metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(3)
    from scipy import ndimage as ndi

    a = ndi.binary_opening(ndi.gaussian_filter(rng.random((24, 20, 16)), 2) > 0.5)
    b = ndi.binary_opening(ndi.gaussian_filter(rng.random((24, 20, 16)), 2) > 0.5)
    assert a.any() and b.any()
    ref = monai_metrics.compute_hausdorff_distance(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None],
                                                   include_background=True, percentile=95, spacing=[1.5, 1.0, 2.0])
    assert hausdorff95(a, b, spacing=(1.5, 1.0, 2.0)) == pytest.approx(float(ref), rel=1e-6)


def test_clip_to_clicks_keeps_exactly_the_clicks_box():
    from extremefast.pseudo.roi import clicks_mask_in_crop, clip_to_clicks, roi_box

    rng = np.random.default_rng(3)
    prob = rng.random((20, 24, 18)).astype(np.float32)
    pts = np.array([[3, 10, 9], [15, 11, 8], [9, 4, 7], [8, 19, 9], [9, 12, 2], [10, 11, 14]])
    out = clip_to_clicks(prob, pts)
    # plain reference: a voxel is kept when every coordinate lies between the clicks' extremes
    idx = np.indices(prob.shape)
    inside = np.all([(idx[a] >= pts[:, a].min()) & (idx[a] <= pts[:, a].max()) for a in range(3)], axis=0)
    np.testing.assert_array_equal(out, np.where(inside, prob, 0))
    assert out is not prob and prob.min() > 0  # the input is left as it was
    # the crop-space mask at zoom 1 (crop = image box) is the same box
    box = roi_box(pts, (1.0, 1.0, 1.0), prob.shape, pad_mm=0.0, size=(13, 16, 13))
    crop_inside = inside[tuple(slice(a, b) for a, b in zip(box.start, box.stop))]
    np.testing.assert_array_equal(clicks_mask_in_crop(box, pts), crop_inside)


def test_mirror_average_is_the_mean_with_the_left_right_flip(trained):
    from extremefast.model import predict_probability

    predictor = Predictor.from_checkpoint(trained)
    cfg, model = predictor.config, predictor.model
    x = torch.rand(cfg.in_channels, 32, 32, 32)
    with torch.no_grad():
        plain = model(x[None])[0, 0]
        mirrored = model(x.flip(1)[None])[0, 0].flip(0)
        got = predict_probability(model, x, cfg)
        alone = predict_probability(model, x, cfg.with_(mirror_average=False))
    torch.testing.assert_close(got, (plain + mirrored) / 2)
    torch.testing.assert_close(alone, plain)
    assert not torch.allclose(plain, mirrored)  # the check above compares two different things


def test_prediction_is_zero_outside_the_clicks_box(trained, unseen):
    predictor = Predictor.from_checkpoint(trained)
    image_path = sorted((unseen / "imagesTr").glob("*.nii.gz"))[0]
    volume = load_nifti(image_path)
    truth = load_nifti(unseen / "labelsTr" / image_path.name, dtype=None).array == SPLEEN
    pts = extreme_points(truth)
    prob = predictor.predict(volume.array, pts, spacing=volume.spacing)
    lo, hi = pts.min(0), pts.max(0) + 1
    inner = np.zeros(prob.shape, bool)
    inner[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    assert prob[~inner].max() == 0 and prob[inner].max() > 0.5
    predictor.config = predictor.config.with_(clip_to_clicks=False)
    assert predictor.predict(volume.array, pts, spacing=volume.spacing)[~inner].max() > 0


def test_with_walker_averages_the_prediction_and_the_walker(trained, unseen, tmp_path, cli):
    from extremefast.pseudo import pseudo_label_from_points

    predictor = Predictor.from_checkpoint(trained)
    image = sorted((unseen / "imagesTr").glob("*.nii.gz"))[0]
    volume = load_nifti(image)
    labels = load_nifti(unseen / "labelsTr" / image.name, dtype=None).array
    pts = extreme_points(labels == SPLEEN)
    spacing = volume.spacing
    alone = predictor.predict(volume.array, pts, spacing=spacing)
    walker = pseudo_label_from_points(volume.array, spacing, pts, predictor.config.pseudo_label_settings).in_image_space()
    both = predictor.predict(volume.array, pts, spacing=spacing, with_walker=True)
    np.testing.assert_allclose(both, np.clip(0.5 * (alone + walker), 0, 1), atol=1e-6)
    assert ((both >= 0.5) != (alone >= 0.5)).any()  # the walker changed the mask
    # the command line: the option reaches the outputs and is recorded in the folder's summary
    points = tmp_path / "points"
    points.mkdir()
    for label_path in sorted((unseen / "labelsTr").glob("*.nii.gz")):
        clicks = extreme_points(load_nifti(label_path, dtype=None).array == SPLEEN)
        write_points(points / (label_path.name[: -len(".nii.gz")] + ".json"), clicks, volume.affine, "voxel")
    code, _, err = cli("predict", "--checkpoint", trained, "--image", unseen / "imagesTr", "--points", points,
                       "--out", tmp_path / "pred", "--with-walker", "--device", "cpu")
    assert code == 0, err
    assert json.loads((tmp_path / "pred" / "summary.json").read_text())["with_walker"] is True
    written = load_nifti(tmp_path / "pred" / image.name, dtype=None).array
    expected = annotate(volume.array, pts, predictor, affine=volume.affine, with_walker=True)
    np.testing.assert_array_equal(written, expected)
