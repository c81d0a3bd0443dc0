"""The browser page of `extremefast serve` in a real browser.

Headless Chromium from Debian's `chromium` package (nothing can download a browser here, so Playwright is
pointed at that binary), rendering NiiVue's WebGL2 in software (SwiftShader). The page is the built one
(`npm ci --prefix web && npm run build --prefix web`), served by a live server on a copy of a shared
sarcoma CT. Six clicks at the tumour's extreme points go through the page (five through its test hook,
which takes the code path of a mouse click, one as a real mouse click on the axial view), the overlay
appears, accept saves it, and the files on disk are checked: the mask's Dice against the real one, the
clicks file against the voxels clicked.

Where the browser, Playwright or the built page is missing the test skips, unless
EXTREMEFAST_REQUIRE_BROWSER=1 (CI), when it fails.
"""
from __future__ import annotations

import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
STATIC = REPO / "extremefast" / "serve" / "static"
SCREENSHOT = Path("/tmp/extremefast_page.png")
CASES = ("STS_002", "STS_004")  # the first is clicked; the second is where "next case" goes
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]
BUILD = "npm ci --prefix web && npm run build --prefix web"


def _missing(reason: str):
    if os.environ.get("EXTREMEFAST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (EXTREMEFAST_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        _missing("no `chromium` on the PATH: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed: pip install -e .[test]")
    if not (STATIC / "index.html").is_file() or not (STATIC / "app.js").is_file():
        _missing(f"the page is not built in {STATIC}: {BUILD}")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def collection(shared_data, tmp_path):
    """Two sarcoma CTs, with no masks and no clicks: what an annotator starts from."""
    src = shared_data / "ct_sarcoma"
    if not src.is_dir():
        pytest.skip(f"{src} not present")
    data = tmp_path / "collection"
    data.mkdir()
    for case in CASES:
        shutil.copy(src / "imagesTr" / f"{case}.nii.gz", data / f"{case}.nii.gz")
    return data, src


def _wait(page, condition: str, timeout_s: float, what: str, problems: list, tmp_path: Path):
    """Wait for a condition in the page; when it does not come, fail with what the page says."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition, timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        shot = tmp_path / "timeout.png"
        page.screenshot(path=str(shot))
        said = page.evaluate("window.extremefast ? extremefast.state.error : 'no page state'")
        pytest.fail(f"{what}: not within {timeout_s:.0f} s; the page says {said!r}; {problems}; screenshot {shot}")


def _dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.slow
def test_six_clicks_in_the_page_save_the_mask(browser, collection, tmp_path):
    from extremefast.data.points import read_points
    from extremefast.imageio import load_image
    from extremefast.pseudo import extreme_points

    from serve_support import start_server

    data, src = collection
    case = CASES[0]
    scan = load_image(data / f"{case}.nii.gz")
    truth = load_image(src / "labelsTr" / f"{case}.nii.gz").array > 0
    clicks = extreme_points(truth).tolist()  # the tumour's six extreme points, file voxel order
    # the file's voxels are L, P, S: NiiVue flips two axes to show it in RAS, so a mix-up would show
    assert scan.affine[0, 0] < 0 and scan.affine[1, 1] < 0

    t0 = time.perf_counter()
    base_url, stop = start_server(data)
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 900}, device_scale_factor=1)
        problems = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.goto(base_url + "/")
        # the first case without an accepted mask opens (POST /activelearning/first), and its scan loads
        _wait(page, f"window.extremefast && extremefast.ready && extremefast.state.caseId === '{case}'"
              " && extremefast.scanLoaded", 60, f"the page opening {case}", problems, tmp_path)
        assert page.evaluate("extremefast.state.cases.map(c => c.status)") == ["new", "new"]

        # a stray click, undone with the button
        page.evaluate("([i, j, k]) => extremefast.clickVoxel(i, j, k)", [10, 10, 10])
        assert page.inner_text("#counter") == "1 of 6"
        page.click("#undo")
        assert page.inner_text("#counter") == "0 of 6"

        # five clicks through the hook (the mouse's code path), each checked against NiiVue's own reading
        # of the point it shows: its world position and the scan's value there
        for n, ijk in enumerate(clicks[:5], 1):
            got = page.evaluate("([i, j, k]) => extremefast.clickVoxel(i, j, k)", ijk)
            assert got == ijk
            assert page.inner_text("#counter") == f"{n} of 6"
        # the sixth as a real mouse click where NiiVue draws that voxel in the axial view
        last = clicks[5]
        where = page.evaluate("([i, j, k]) => extremefast.voxelOnScreen(i, j, k, 'axial')", last)
        assert where is not None
        page.mouse.click(where["x"], where["y"])
        assert page.evaluate("extremefast.state.clicks") == clicks, "the mouse click landed on another voxel"
        assert page.inner_text("#counter") == "6 of 6"

        for ijk in clicks:
            seen = page.evaluate("([i, j, k]) => extremefast.atVoxel(i, j, k)", ijk)
            mm = (scan.affine @ np.r_[ijk, 1.0])[:3]
            np.testing.assert_allclose(seen["mm"], mm, atol=1e-2, err_msg=f"NiiVue shows voxel {ijk} elsewhere")
            assert seen["values"][0] == pytest.approx(float(scan.array[tuple(ijk)])), f"scan value at {ijk}"

        # the mask comes back and is drawn over the scan
        t_click = time.perf_counter()
        _wait(page, "extremefast.state.mask && extremefast.nv.volumes.length === 2", 120, "the mask overlay",
              problems, tmp_path)
        infer_s = time.perf_counter() - t_click
        page.evaluate("([i, j, k]) => extremefast.showVoxel(i, j, k)",
                      np.argwhere(truth).mean(axis=0).round().astype(int).tolist())
        page.wait_for_timeout(500)
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot))
        shutil.copy(shot, SCREENSHOT)
        print(f"\nscreenshot: {shot} (copied to {SCREENSHOT})")
        overlay_at_clicks = [page.evaluate("([i, j, k]) => extremefast.atVoxel(i, j, k).values[1]", p) for p in clicks]

        # accept: the mask and the clicks are saved, and the page goes on to the next case
        page.click("#accept")
        _wait(page, f"extremefast.state.caseId === '{CASES[1]}' && extremefast.scanLoaded", 60,
              "the next case after accept", problems, tmp_path)
        assert page.evaluate("extremefast.state.cases.map(c => c.status)") == ["accepted", "new"]
        assert page.inner_text("#counter") == "0 of 6"
        assert not page.is_visible("#error"), page.inner_text("#error")
        assert problems == []

        # the collection's masks as a zip, through the page's download link
        with page.expect_download() as download:
            page.click("#download")
        with zipfile.ZipFile(download.value.path()) as z:
            assert any(name.endswith(f"{case}.nii.gz") for name in z.namelist()), z.namelist()

        # a refusal from the server shows as one line in the page: one clicked case is too few to train on
        page.click("#train")
        _wait(page, "!document.getElementById('error').hidden", 30, "the error line", problems, tmp_path)
        said = page.inner_text("#error")
        assert said.startswith("POST /train/: 400 ") and "\n" not in said, said
        page.close()
    finally:
        stop()
    elapsed = time.perf_counter() - t0

    mask_file = data / "labelsTr" / f"{case}.nii.gz"
    assert mask_file.is_file()
    mask = load_image(mask_file)
    assert mask.shape == scan.shape
    np.testing.assert_allclose(mask.affine, scan.affine, atol=1e-4)
    score = _dice(mask.array > 0, truth)
    print(f"walker mask from the page: Dice {score:.3f}, overlay in {infer_s:.1f} s, test {elapsed:.1f} s")
    assert score >= 0.7
    # the overlay NiiVue drew is the saved mask, on the same voxels
    assert [v > 0 for v in overlay_at_clicks] == [bool(mask.array[tuple(p)] > 0) for p in clicks]

    saved = read_points(data / f"{case}.mrk.json", scan.affine, scan.shape)
    assert sorted(np.asarray(saved).round().astype(int).tolist()) == sorted(clicks)


@pytest.mark.slow
def test_page_behind_a_token(browser, collection, tmp_path):
    """With --token, the page opened once as /?token=T loads its files, lists the cases and shows the scan."""
    from serve_support import start_server

    data, _ = collection
    base_url, stop = start_server(data, token="s3cret-token")
    try:
        refused = browser.new_page()
        assert refused.goto(base_url + "/").status == 401
        refused.close()
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        problems = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} {r.url}"))
        page.goto(base_url + "/?token=s3cret-token")
        _wait(page, f"window.extremefast && extremefast.ready && extremefast.state.caseId === '{CASES[0]}'"
              " && extremefast.scanLoaded", 60, "the page behind a token", problems, tmp_path)
        assert page.evaluate("extremefast.state.cases.map(c => c.id)") == list(CASES)
        assert not page.is_visible("#error"), page.inner_text("#error")
        assert problems == []
        page.close()
    finally:
        stop()
