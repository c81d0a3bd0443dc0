"""``extremefast serve`` driven live on 127.0.0.1: by MONAI Label's own client, with bad input, killed mid-save.

Needs the ``[serve]`` extra and ``monailabel`` (``pip install --no-deps monailabel``, client module only).
Without them the module is skipped, unless EXTREMEFAST_REQUIRE_SERVE=1 (CI), where it fails.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest


def _need(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("EXTREMEFAST_REQUIRE_SERVE", "") not in ("", "0"):
            raise
        pytest.skip(f"{module} is not installed (pip install 'extremefast[serve]'; pip install --no-deps monailabel)",
                    allow_module_level=True)


_need("fastapi")
_need("uvicorn")
_need("python_multipart" if importlib.util.find_spec("python_multipart") else "multipart")
requests = _need("requests")
MONAILabelClient = _need("monailabel.client").MONAILabelClient

from extremefast.imageio import load_image, save_image  # noqa: E402
from extremefast.metrics import dice  # noqa: E402
from extremefast.pseudo import extreme_points  # noqa: E402

from serve_support import start_server, start_server_process  # noqa: E402

CASES = ("STS_002", "STS_004", "STS_006")
WALKER, MODEL = "extreme_points_walker", "extreme_points_model"


@pytest.fixture
def collection(tmp_path, shared_data) -> Path:
    """A plain folder of three shared sarcoma scans (their masks stay in the shared folder)."""
    folder = tmp_path / "collection"
    folder.mkdir()
    for case in CASES:
        shutil.copy(shared_data / "ct_sarcoma" / "imagesTr" / f"{case}.nii.gz", folder)
    return folder


def truth(shared_data, case) -> np.ndarray:
    """The shared mask of ``case`` in its file's voxel order."""
    return load_image(shared_data / "ct_sarcoma" / "labelsTr" / f"{case}.nii.gz", dtype=None).array == 1


def snapshot(folder: Path) -> dict:
    """Every file of the datastore (the server's own state folder aside) with its hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".extremefast" not in p.parts}


@pytest.mark.slow  # about 50 s on 2 cores (a tiny training run); still run by default
def test_slicer_sequence_with_monai_label_client(collection, shared_data, tmp_path):
    """info, next sample, infer (walker), save label, datastore, train, status until done, infer (model)."""
    from extremefast.cli.main import main

    url, stop = start_server(collection)
    try:
        client = MONAILabelClient(url, tmpdir=str(tmp_path))
        info = client.info()
        walker = info["models"][WALKER]
        assert (walker["type"], walker["dimension"], walker["labels"]) == ("deepgrow", 3, {"organ": 1})
        assert MODEL not in info["models"]

        sample = client.next_sample("first", {})
        assert sample["id"] == CASES[0] and sample["status"] == "new"

        masks = {}
        for case in CASES:  # Slicer's point panel: the clicks as voxel indices of the scan as stored
            mask = truth(shared_data, case)
            points = extreme_points(mask)
            out, params = client.infer(WALKER, case, {"foreground": points.tolist(), "background": [],
                                                      "label": "organ", "result_extension": ".nrrd",
                                                      "result_dtype": "uint8"})
            got = load_image(out, dtype=None)
            assert got.shape == mask.shape
            masks[case] = got.array > 0
            score = dice(masks[case], mask)
            assert score >= 0.7, f"{case}: walker Dice {score:.3f}"
            assert params["complete"] and params["clicks_saved"] and params["label_names"] == {"organ": 1}
            assert (collection / f"{case}.mrk.json").is_file()

        # the same clicks through `extremefast pseudo-label --points` give the same masks
        out_dir = tmp_path / "pseudo"
        assert main(["pseudo-label", "--data", str(collection), "--points", str(collection), "--out", str(out_dir),
                     "--workers", "1"]) == 0
        for case in CASES:
            cli = load_image(out_dir / f"{case}.nii.gz", dtype=None).array >= 0.5
            assert np.array_equal(cli, masks[case]), f"{case}: server and pseudo-label masks differ"

        # save the label as Slicer submits it, and see the datastore's status
        saved_file = tmp_path / "submitted.nii.gz"
        image = load_image(collection / f"{CASES[0]}.nii.gz")
        save_image(saved_file, masks[CASES[0]].astype(np.uint8), image.affine)
        reply = client.save_label(CASES[0], str(saved_file), tag="final", params={"label_info": [{"name": "organ", "idx": 1}]})
        assert reply["image"] == CASES[0]
        stored = load_image(collection / "labelsTr" / f"{CASES[0]}.nii.gz", dtype=None).array > 0
        assert np.array_equal(stored, masks[CASES[0]])
        objects = client.datastore()["objects"]
        assert [objects[c]["status"] for c in CASES] == ["accepted", "clicked", "clicked"]
        assert "final" in objects[CASES[0]]["labels"] and objects[CASES[1]]["labels"] == {}
        assert client.next_sample("first", {})["id"] == CASES[1]

        # train on the clicks (tiny settings), follow it, infer with the model it made
        task = client.train_start(MODEL, {"rounds": 1, "epochs": 1, "crop_size": 32, "batch_size": 1,
                                          "device": "cpu"})
        assert task["status"] == "RUNNING"
        deadline = time.time() + 420
        while True:
            status = client.train_status()
            if status["status"] not in ("RUNNING", "SUBMITTED"):
                break
            assert time.time() < deadline, "training did not finish in time"
            # inference keeps answering while the run trains
            time.sleep(2)
        assert status["status"] == "DONE", status
        assert status["progress"]["rows"] and status["result"]["model"] == MODEL
        info = client.info()
        assert info["models"][MODEL]["type"] == "deepgrow"
        stats = info["train_stats"][MODEL]  # what Slicer's progress and accuracy bars read
        assert 1 <= stats["epoch"] <= stats["total_epochs"] and 0.0 <= stats["best_metric"] <= 1.0, stats
        out, params = client.infer(MODEL, CASES[1], {"foreground": extreme_points(truth(shared_data, CASES[1])).tolist()})
        got = load_image(out, dtype=None).array > 0
        assert params["model"] == MODEL and got.any()
        assert dice(got, truth(shared_data, CASES[1])) >= 0.5
    finally:
        stop()


def _detail(response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    return detail


def test_bad_input_is_refused_and_leaves_the_datastore_unchanged(collection, shared_data, tmp_path):
    url, stop = start_server(collection, max_upload_mb=1, warm=False)
    points = extreme_points(truth(shared_data, CASES[0]))
    infer = f"{url}/infer/{WALKER}"
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not a scan at all")
    small = tmp_path / "small.nii.gz"
    save_image(small, np.ones((10, 10, 10), np.uint8), np.eye(4))
    big = tmp_path / "big.nii.gz"
    big.write_bytes(os.urandom(2 * 1024 * 1024))

    def form(pts):
        return {"params": json.dumps({"foreground": pts})}

    cases = [  # (what, request, status, words in the reason)
        ("unknown image id", lambda: requests.post(f"{infer}?image=NOPE", data=form(points.tolist())), 404, "NOPE"),
        ("a path as image id", lambda: requests.post(f"{infer}?image=../../etc/passwd", data=form(points.tolist())),
         400, "not a datastore name"),
        ("a path to download", lambda: requests.get(f"{url}/datastore/image", params={"image": "../../etc/passwd"}),
         400, "not a datastore name"),
        ("malformed JSON params", lambda: requests.post(f"{infer}?image={CASES[0]}", data={"params": "{foreground: ["}),
         400, "not valid JSON"),
        ("seven points", lambda: requests.post(f"{infer}?image={CASES[0]}",
                                               data=form(points.tolist() + [points[0].tolist()])),
         400, "needs exactly six extreme points, got 7"),
        ("a point outside", lambda: requests.post(f"{infer}?image={CASES[0]}",
                                                  data=form(points[:5].tolist() + [[9999, 0, 0]])), 400, "outside"),
        ("an upload that is not a scan",
         lambda: requests.put(f"{url}/datastore/image?image=junk", files={"file": ("junk.nii.gz", junk.read_bytes())}),
         400, "not a readable 3D scan"),
        ("an upload over the limit",
         lambda: requests.put(f"{url}/datastore/image?image=big", files={"file": ("big.nii.gz", big.read_bytes())}),
         413, "limit"),
        ("a label of another shape",
         lambda: requests.put(f"{url}/datastore/label?image={CASES[0]}&tag=final",
                              files={"label": ("small.nii.gz", small.read_bytes())}), 400, "differs"),
        ("a label for a path", lambda: requests.put(f"{url}/datastore/label?image=..%2F..%2Fetc%2Fpasswd",
                                                    files={"label": ("small.nii.gz", small.read_bytes())}),
         400, "not a datastore name"),
        ("an unknown model", lambda: requests.post(f"{url}/infer/nope?image={CASES[0]}", data=form([])), 404, "nope"),
        ("the model before training", lambda: requests.post(f"{url}/infer/{MODEL}?image={CASES[0]}", data=form([])),
         404, "no training run"),
        ("a session that is not a scan",
         lambda: requests.put(f"{url}/session/", files={"files": ("junk.nii.gz", junk.read_bytes())}), 400,
         "not a readable 3D scan"),
        ("a training request of the wrong type", lambda: requests.post(f"{url}/train/", json={"rounds": "many"}),
         422, "rounds"),
        ("training without clicks", lambda: requests.post(f"{url}/train/", json={}), 400, "at least 2"),
    ]
    try:
        before = snapshot(collection)
        for what, call, code, words in cases:
            response = call()
            assert response.status_code == code, f"{what}: {response.status_code} {response.text}"
            assert words in _detail(response), f"{what}: {response.text}"
            assert snapshot(collection) == before, f"{what} changed the datastore"
        # five points: a 200 with an empty mask and what is missing, nothing saved
        response = requests.post(f"{infer}?image={CASES[0]}&output=json", data=form(points[:5].tolist()))
        assert response.status_code == 200
        assert response.json()["message"] == "5 of 6 extreme points: place 1 more"
        response = requests.post(f"{infer}?image={CASES[0]}&output=image", data=form(points[:5].tolist()))
        empty = tmp_path / "empty.nii.gz"
        empty.write_bytes(response.content)
        assert not load_image(empty, dtype=None).array.any()
        assert snapshot(collection) == before
        assert not list((collection / ".extremefast").glob("tmp*")) and not list(collection.glob(".*.tmp*"))
    finally:
        stop()


def test_token_is_required_when_set(collection, tmp_path):
    from extremefast.cli.main import main

    url, stop = start_server(collection, token="s3cret", warm=False)
    try:
        response = requests.get(f"{url}/info/")
        assert response.status_code == 401 and _detail(response) == "missing or wrong bearer token"
        assert requests.get(f"{url}/info/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert requests.get(f"{url}/datastore/cases", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert requests.get(f"{url}/datastore/cases?token=s3cret").status_code == 200
    finally:
        stop()
    # binding beyond loopback without a token is refused in one line
    for host in ("0.0.0.0", "::", ""):
        assert main(["serve", "--data", str(collection), "--host", host, "--port", "0"]) == 1, host


def test_sigkill_during_a_label_save_leaves_no_partial_mask(tmp_path):
    """A server killed while it writes a mask leaves the old mask whole; its temporary file is never a mask."""
    folder = tmp_path / "big"
    folder.mkdir()
    shape = (320, 320, 240)  # a mask big enough that its write takes a while
    affine = np.diag([0.8, 0.8, 1.0, 1.0])
    save_image(folder / "scan.nii.gz", np.zeros(shape, np.int16), affine)
    old = np.zeros(shape, np.uint8)
    old[100:150, 100:150, 100:150] = 1
    save_image(folder / "labelsTr" / "scan.nii.gz", old, affine)
    mask_file = folder / "labelsTr" / "scan.nii.gz"
    old_hash = hashlib.sha256(mask_file.read_bytes()).hexdigest()
    new = np.random.default_rng(0).integers(0, 2, shape, dtype=np.uint8)  # incompressible: a slow write
    upload = tmp_path / "new.nii.gz"
    save_image(upload, new, affine)

    # The kill must land between the temporary file's last byte and its rename. The server's own
    # write is too quick to catch by polling, so in this test's server process the step between
    # the two (the fsync) first waits 8 s: the kill comes while the written file waits there.
    slow = ("import time, extremefast.atomic as atomic\n_fsync = atomic._fsync\n"
            "atomic._fsync = lambda path: (time.sleep(8), _fsync(path))")
    url, proc = start_server_process(folder, before=slow)
    import threading

    answer = []

    def put():
        try:
            answer.append(requests.put(f"{url}/datastore/label?image=scan&tag=final",
                                       files={"label": ("new.nii.gz", upload.read_bytes())}, timeout=120))
        except requests.RequestException as exc:
            answer.append(exc)  # the server dies under it

    try:
        thread = threading.Thread(target=put, daemon=True)
        thread.start()
        deadline = time.time() + 120
        while not list((folder / "labelsTr").glob(".scan.*.tmp*")):
            assert time.time() < deadline and proc.poll() is None, (
                f"the save never started writing: {answer}; {Path(proc.log_path).read_text()[-2000:]}")
            time.sleep(0.01)
        time.sleep(1.0)  # the file written whole, its rename 7 s away
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        thread.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert hashlib.sha256(mask_file.read_bytes()).hexdigest() == old_hash  # the old mask, whole
    from extremefast.data.dataset import open_msd
    from extremefast.serve.datastore import Datastore

    cases = open_msd(folder).cases
    assert [c.label_path.name for c in cases] == ["scan.nii.gz"]  # the leftover is never taken as a mask
    ds = Datastore(folder)  # a new server removes what the killed writer left
    assert ds.status("scan") == "accepted" and ds.removed_temporaries
    assert not [p for p in (folder / "labelsTr").iterdir() if p.name != "scan.nii.gz"]


def test_training_stops_resumes_and_resumes_after_a_restart(collection, shared_data):
    """DELETE /train/ stops a run resumably; {"resume": true} resumes it; a server stopped mid-run resumes it on
    its next start; inference answers while a run trains."""
    def clicked(url):
        for case in CASES[:2]:
            r = requests.put(f"{url}/datastore/clicks?image={case}",
                             json={"clicks": extreme_points(truth(shared_data, case)).tolist()})
            assert r.status_code == 200, r.text

    url, stop = start_server(collection, warm=False)
    try:
        clicked(url)
        body = {"rounds": 3, "epochs": 200, "crop_size": 32, "batch_size": 1, "device": "cpu"}
        task = requests.post(f"{url}/train/", json=body).json()
        assert task["status"] == "RUNNING", task
        assert requests.post(f"{url}/train/", json=body).status_code == 409
        r = requests.post(f"{url}/infer/{WALKER}?image={CASES[0]}&output=json",
                          data={"params": json.dumps({"foreground": extreme_points(truth(shared_data, CASES[0])).tolist(),
                                                      "save_clicks": False})})
        assert r.status_code == 200 and r.json()["voxels"] > 0  # the run does not stop inference
        stopped = requests.delete(f"{url}/train/").json()
        assert stopped["status"] == "STOPPED" and stopped["id"] == task["id"], stopped
        resumed = requests.post(f"{url}/train/", json={"resume": True}).json()
        assert resumed["status"] == "RUNNING" and resumed["id"] == task["id"], resumed
        assert "--resume" in requests.get(f"{url}/train/log").text
    finally:
        stop()  # stops the run with the server
    run = requests.utils.quote(task["id"])
    record = json.loads((collection / ".extremefast" / "runs" / run / "run.json").read_text())
    assert record["status"] == "STOPPED" and record["resume_on_start"]

    url, stop = start_server(collection, warm=False)
    try:
        again = requests.get(f"{url}/train/").json()
        assert again["id"] == task["id"] and again["status"] == "RUNNING", again
        assert again["reason"] == "resumed after the server restarted"
        assert requests.delete(f"{url}/train/").json()["status"] == "STOPPED"
    finally:
        stop()


def test_a_killed_server_resumes_its_run_on_restart(collection, shared_data):
    """SIGKILL the server and its run mid-run (a machine that went down): the next server resumes the run."""
    url, proc = start_server_process(collection)
    try:
        for case in CASES[:2]:
            r = requests.put(f"{url}/datastore/clicks?image={case}",
                             json={"clicks": extreme_points(truth(shared_data, case)).tolist()})
            assert r.status_code == 200, r.text
        task = requests.post(f"{url}/train/", json={"rounds": 3, "epochs": 200, "crop_size": 32, "batch_size": 1,
                                                    "device": "cpu"}).json()
        assert task["status"] == "RUNNING", task
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        os.killpg(task["pid"], signal.SIGKILL)  # the run's own process group
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 30
    while Path(f"/proc/{task['pid']}").exists() and time.time() < deadline:
        time.sleep(0.1)
    url, stop = start_server(collection, warm=False)
    try:
        again = requests.get(f"{url}/train/").json()
        assert again["id"] == task["id"] and again["status"] == "RUNNING", again
        assert again["reason"] == "resumed after the server restarted" and again["pid"] != task["pid"]
        assert requests.delete(f"{url}/train/").json()["status"] == "STOPPED"
    finally:
        stop()


def test_upload_session_accept_and_download(collection, shared_data, tmp_path):
    """The client's upload and session calls; the page's extras: clicks, accept, the masks zip."""
    import io
    import zipfile

    scan = shared_data / "ct_sarcoma" / "imagesTr" / "STS_008.nii.gz"
    url, stop = start_server(collection, warm=False)
    try:
        client = MONAILabelClient(url, tmpdir=str(tmp_path))
        assert client.upload_image(str(scan), "STS_008")["image"] == "STS_008"
        assert (collection / "STS_008.nii.gz").is_file()
        assert requests.put(f"{url}/datastore/image?image=STS_008",
                            files={"file": ("STS_008.nii.gz", scan.read_bytes())}).status_code == 409
        session = client.create_session(str(scan))["session_id"]
        mask = load_image(shared_data / "ct_sarcoma" / "labelsTr" / "STS_008.nii.gz", dtype=None).array == 1
        out, params = client.infer(WALKER, "", {"foreground": extreme_points(mask).tolist()}, session_id=session)
        assert load_image(out, dtype=None).shape == mask.shape and not params["clicks_saved"]
        assert requests.get(f"{url}/train/").status_code == 404

        case = CASES[1]
        clicks = extreme_points(truth(shared_data, case)).tolist()
        assert requests.put(f"{url}/datastore/clicks?image={case}", json={"clicks": clicks}).json()["file"] == \
            f"{case}.mrk.json"
        listed = {c["id"]: c for c in requests.get(f"{url}/datastore/cases").json()["cases"]}
        assert listed[case]["status"] == "clicked" and sorted(map(tuple, listed[case]["clicks"])) == \
            sorted(map(tuple, clicks))
        accepted = requests.post(f"{url}/datastore/accept?image={case}").json()
        assert accepted["status"] == "accepted" and accepted["voxels"] > 0
        assert requests.get(f"{url}/datastore/cases").json()["counts"] == {"new": 3, "clicked": 0, "accepted": 1}
        names = zipfile.ZipFile(io.BytesIO(requests.get(f"{url}/datastore/masks.zip").content)).namelist()
        assert sorted(names) == [f"clicks/{case}.mrk.json", f"labelsTr/{case}.nii.gz"]
        assert requests.delete(f"{url}/datastore/clicks?image={case}").json()["clicks"] is None
        assert requests.delete(f"{url}/datastore/label?id={case}&tag=final").status_code == 200
        assert requests.get(f"{url}/datastore/cases").json()["counts"]["new"] == 4
    finally:
        stop()


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A small synthetic collection: a NIfTI scan, a detached-header NRRD, a MetaImage, and two links (to a scan
    and to a secret outside the folder)."""
    import SimpleITK as sitk

    folder = tmp_path / "tiny"
    folder.mkdir()
    image = np.zeros((30, 24, 16), np.int16)
    image[10:20, 8:16, 4:12] = 100
    affine = np.diag([0.8, 0.9, 2.0, 1.0])
    save_image(folder / "a.nii.gz", image, affine)
    itk = sitk.GetImageFromArray(image.transpose(2, 1, 0).copy())
    itk.SetSpacing((0.8, 0.9, 2.0))
    sitk.WriteImage(itk, str(folder / "hdr.nhdr"))
    sitk.WriteImage(itk, str(folder / "meta.mhd"))
    (tmp_path / "secret.txt").write_text("SECRET")
    (folder / "secret.nii.gz").symlink_to(tmp_path / "secret.txt")
    save_image(tmp_path / "outside.nii.gz", image, affine)
    (folder / "outside.nii.gz").symlink_to(tmp_path / "outside.nii.gz")
    return folder


def test_files_leave_only_as_scans_of_the_datastore(tiny, tmp_path):
    """Detached headers and links out of the folder are sent as one NIfTI made of the scan (or refused when it
    is none): never another file's bytes. Static files and ids: no way out of their folders."""
    url, stop = start_server(tiny, warm=False)
    try:
        objects = requests.get(f"{url}/datastore/?output=all").json()["objects"]
        for case in ("hdr", "meta", "outside"):
            assert objects[case]["image"]["ext"] == ".nii.gz", objects[case]
            r = requests.get(f"{url}/datastore/image", params={"image": case})
            assert r.status_code == 200 and r.headers["content-disposition"] == f'attachment; filename="{case}.nii.gz"'
            served = tmp_path / f"served_{case}.nii.gz"
            served.write_bytes(r.content)
            np.testing.assert_array_equal(load_image(served, dtype=None).array,
                                          load_image(tiny / "a.nii.gz", dtype=None).array)
        assert objects["a"]["image"]["ext"] == ".nii.gz"
        assert requests.get(f"{url}/datastore/image?image=a").content == (tiny / "a.nii.gz").read_bytes()
        r = requests.get(f"{url}/datastore/image?image=secret")
        assert r.status_code == 400 and "SECRET" not in r.text
        assert requests.post(f"{url}/activelearning/first").json()["name"] == "a.nii.gz"
        for path in ("/static/..%2f..%2fapp.py", "/static/%2e%2e/%2e%2e/app.py", "/static/%2Fetc%2Fpasswd",
                     "/static/app.js%00.txt", "/datastore/image?image=%2Fetc%2Fpasswd",
                     "/datastore/image?image=a%00", "/datastore/label?label=..&tag=final",
                     f"/datastore/image?image={'a' * 5000}"):
            r = requests.get(url + path)
            assert r.status_code in (400, 404), (path, r.status_code)
            _detail(r)
        assert requests.get(f"{url}/docs").status_code == 404 and requests.get(f"{url}/redoc").status_code == 404
    finally:
        stop()


def test_uploads_that_name_other_files_are_refused(tiny):
    """A NRRD or MetaImage header can send its reader to any path ('data file: /etc/passwd'): refused, for
    scans, sessions and labels alike; the datastore stays as it was."""
    url, stop = start_server(tiny, warm=False)
    nrrd = b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 30 24 16\nencoding: raw\ndata file: /etc/passwd\n\n"
    mha = b"ObjectType = Image\nNDims = 3\nDimSize = 30 24 16\nElementType = MET_UCHAR\nElementDataFile = /etc/passwd\n"
    try:
        before = snapshot(tiny)
        for call in (lambda: requests.put(f"{url}/datastore/image?image=x", files={"file": ("x.nrrd", nrrd)}),
                     lambda: requests.put(f"{url}/datastore/image?image=x", files={"file": ("x.mha", mha)}),
                     lambda: requests.put(f"{url}/session/", files={"files": ("x.nrrd", nrrd)}),
                     lambda: requests.put(f"{url}/datastore/label?image=a&tag=final", files={"label": ("x.nrrd", nrrd)})):
            r = call()
            assert r.status_code == 400 and "another file" in _detail(r), r.text
        r = requests.put(f"{url}/datastore/label?image=a&tag=final", files={"label": ("x.nhdr", nrrd)})
        assert r.status_code == 400 and "x.nhdr" in _detail(r)
        assert snapshot(tiny) == before
    finally:
        stop()


def test_an_upload_declaring_too_many_voxels_is_refused_before_it_is_read(tiny):
    """A few hundred bytes of gzip can declare a volume that fills the memory: the header's size is
    checked before any voxel is read."""
    import gzip

    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape((4096, 4096, 4096))
    header.set_data_dtype(np.uint8)
    bomb = gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * (1 << 20))  # 1 MB of the declared 64 GB
    url, stop = start_server(tiny, warm=False)
    try:
        before = snapshot(tiny)
        for call in (lambda: requests.put(f"{url}/datastore/image?image=x", files={"file": ("x.nii.gz", bomb)}),
                     lambda: requests.put(f"{url}/session/", files={"files": ("x.nii.gz", bomb)})):
            r = call()
            assert r.status_code == 400 and "68,719,476,736 voxels" in _detail(r), r.text
        assert snapshot(tiny) == before
    finally:
        stop()


def test_the_door_size_origin_host_and_slicer_login(tiny, tmp_path):
    """Bodies over the limit stop while they stream; cross-origin writes and foreign Host names are refused;
    with a token, 3D Slicer logs in through MONAI Label's /auth/ calls (password = the token)."""
    url, stop = start_server(tiny, warm=False, max_upload_mb=1)
    try:
        def body():
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.nii.gz"\r\n\r\n'
            for _ in range(200):
                yield b"y" * 65536
            yield b"\r\n--b--\r\n"
        r = requests.put(f"{url}/datastore/image?image=x", data=body(),
                         headers={"content-type": "multipart/form-data; boundary=b"})  # chunked: no length
        assert r.status_code == 413 and "limit" in _detail(r)
        r = requests.post(f"{url}/train/", headers={"Origin": "http://elsewhere.example"})
        assert r.status_code == 403 and "cross-origin" in _detail(r)
        r = requests.get(f"{url}/info/", headers={"Host": "rebound.example:80"})
        assert r.status_code == 403 and "not this machine" in _detail(r)
        assert requests.get(f"{url}/info/", headers={"Origin": url}).status_code == 200
        assert not MONAILabelClient(url, tmpdir=str(tmp_path)).auth_enabled()
        assert not list(tiny.glob("x*"))
    finally:
        stop()
    url, stop = start_server(tiny, token="s3cret", warm=False)
    try:
        client = MONAILabelClient(url, tmpdir=str(tmp_path))
        assert client.auth_enabled()  # what Slicer asks first, without a token
        with pytest.raises(importlib.import_module("monailabel.client.client").MONAILabelClientException):
            client.auth_token("annotator", "wrong")
        client.update_auth(client.auth_token("annotator", "s3cret"))
        assert client.auth_valid_token() and WALKER in client.info()["models"]
        for path in ("/static/app.js", "/openapi.json", "/", "/datastore/image?image=a", "/auth/token/valid"):
            assert requests.get(url + path).status_code == 401, path
    finally:
        stop()


def test_what_3d_slicer_sends_besides_the_clicks(tiny, tmp_path):
    """Slicer's module: infer with result_extension/result_dtype, an infer with no model (its auto-segment on
    next sample), a session named by an odd file name; /info/ with strategies, trainers and labels."""
    url, stop = start_server(tiny, warm=False)
    try:
        client = MONAILabelClient(url, tmpdir=str(tmp_path))
        info = client.info()
        assert set(info["strategies"]) == {"first", "random"} and list(info["trainers"]) == [MODEL]
        assert info["labels"] == {"organ": 1} and "config" not in info  # Slicer refuses an app with "config"
        out, params = client.infer("", "a", {"result_extension": ".nrrd", "result_dtype": "uint8"})
        assert params["message"] == "0 of 6 extreme points: place 6 more" and not load_image(out, dtype=None).array.any()
        clicks = [[10, 12, 8], [19, 12, 8], [15, 8, 8], [15, 15, 8], [15, 12, 4], [15, 12, 11]]
        out, params = client.infer(WALKER, "a", {"foreground": clicks, "background": [], "label": "organ",
                                                 "result_extension": ".nrrd", "result_dtype": "uint8"})
        assert params["complete"] and load_image(out, dtype=None).array.any()
        upload = tmp_path / 'a"..\\..\\evil.nii.gz'
        shutil.copy(tiny / "a.nii.gz", upload)
        session = client.create_session(str(upload))
        name = session["session_info"]["name"]  # Slicer saves the returned mask under it
        assert name.endswith("evil") and ".." not in name and all(c.isalnum() or c in "._-" for c in name), name
        out, _ = client.infer(WALKER, "", {"foreground": clicks}, session_id=session["session_id"])
        assert Path(out).parent == tmp_path and "\\" not in Path(out).name and '"' not in Path(out).name
        r = requests.post(f"{url}/infer/{WALKER}?image=a&output=json", data={"params": json.dumps({"foreground": [[True, 1, 1]]})})
        assert r.status_code == 400 and "numbers" in _detail(r)
    finally:
        stop()


def test_masks_are_written_only_inside_the_datastore(tiny, tmp_path):
    """A dataset.json whose label entry points out of the folder: the server refuses to write there."""
    (tiny / "dataset.json").write_text(json.dumps({"name": "tiny", "labels": {"0": "background", "1": "organ"},
                                                   "training": [{"image": "./a.nii.gz", "label": "../victim.nii.gz"}]}))
    victim = tmp_path / "victim.nii.gz"
    save_image(victim, np.zeros((30, 24, 16), np.uint8), np.diag([0.8, 0.9, 2.0, 1.0]))
    kept = victim.read_bytes()
    url, stop = start_server(tiny, warm=False)
    try:
        clicks = [[10, 12, 8], [19, 12, 8], [15, 8, 8], [15, 15, 8], [15, 12, 4], [15, 12, 11]]
        r = requests.post(f"{url}/datastore/accept?image=a", json={"clicks": clicks})
        assert r.status_code == 400 and "outside the datastore" in _detail(r), r.text
        assert victim.read_bytes() == kept
    finally:
        stop()


@pytest.mark.exact_band
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_warm_up_compiles_the_iterative_walker(monkeypatch, modality):
    """The server's warm-up crop has more unknowns than the walker solves exactly, so the
    first annotator's request does not wait for the iterative solve's kernels."""
    from extremefast.random_walk import segmentation
    from extremefast.serve.models import Walker

    solvers = []
    real = segmentation._plan

    def spy(*args, **kwargs):
        plan = real(*args, **kwargs)
        solvers.append(plan.solver)
        return plan

    monkeypatch.setattr(segmentation, "_plan", spy)
    Walker(modality).warm()
    assert solvers == ["rb"]
