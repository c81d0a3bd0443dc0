"""``extremefast serve``: the walker's mask through HTTP vs the library call, warm, on shared real scans.

Eight scans (four sarcoma CTs, four head-and-neck CTs; clicks = the masks' extreme points, as Slicer sends
them: voxel indices of the scan file) in one datastore served on 127.0.0.1. First eight concurrent infer
requests, one per scan: every mask must equal the library's from the same clicks. Then, warm, each scan
``--repeat`` times in turn: the HTTP request (Slicer's default multipart answer: params + ``.nii.gz``) beside
the library call on the same scan in memory (``extremefast.serve.models.infer``: the clicks to the oriented
grid, ``pseudo_label_from_points``, back to the file's grid: what the route calls). p50/p95 of each and the
ratio are printed. Targets on a 2-core CPU: HTTP p95 <= 1.5 s, HTTP/library <= 1.15.
"""
from __future__ import annotations

import gzip
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _harness import parser, report

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SCANS = [("ct_sarcoma", c, 1) for c in ("STS_002", "STS_004", "STS_006", "STS_007")] + \
        [("ct_headneck", c, 7) for c in ("pt_100", "pt_105", "pt_112", "pt_113")]  # 7: the mandible


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def start(data_dir):
    import socket

    import uvicorn

    from extremefast.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(data_dir), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def mask_from_multipart(response) -> np.ndarray:
    """The mask file of an infer answer (multipart: params + image)."""
    import nibabel as nib

    ctype = response.headers["content-type"]
    boundary = ctype.split("boundary=")[1].encode()
    for part in response.content.split(b"--" + boundary):
        if b'name="image"' in part:
            data = part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
            img = nib.Nifti1Image.from_bytes(gzip.decompress(data))
            return np.asarray(img.dataobj)
    raise AssertionError("no image part in the answer")


def http_infer(url, case, clicks, session=None):
    """(seconds, response) of one walker request as Slicer sends it."""
    import requests

    t = time.perf_counter()
    r = (session or requests).post(f"{url}/infer/extreme_points_walker?image={case}",
                                   data={"params": json.dumps({"foreground": clicks})})
    r.raise_for_status()
    return time.perf_counter() - t, r


def burst(url, clicks, library) -> tuple[float, list]:
    """Eight concurrent requests on eight scans, each mask checked against the library's (correctness first)."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda case: http_infer(url, case, clicks[case]), library))
    wall = time.perf_counter() - t0
    for case, (_, r) in zip(library, answers):
        if not np.array_equal(mask_from_multipart(r), library[case]):
            sys.exit(f"{case}: the served mask differs from the library's")
    latencies = [s for s, _ in answers]
    print(f"8 concurrent requests on 8 scans: all masks equal to the library's; wall {wall:.2f} s, "
          f"latency p50 {percentile(latencies, 50):.2f} s, max {max(latencies):.2f} s")
    return wall, latencies


def warm_rows(url, scans, clicks, repeat) -> tuple[list, dict]:
    """Warm, one at a time: each scan's HTTP request beside the library call; rows and the p50/p95 summary."""
    import requests

    from extremefast.serve.models import Walker, infer

    walker, session = Walker("CT"), requests.Session()
    rows, http_all, lib_all = [], [], []
    for case in scans:
        h, lib = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            infer(walker, scans[case], clicks[case], {"organ": 1})
            lib.append(time.perf_counter() - t)
            h.append(http_infer(url, case, clicks[case], session)[0])
        http_all += h
        lib_all += lib
        rows.append({"scan": case, "shape": "x".join(map(str, scans[case].file_shape)),
                     "library p50 s": statistics.median(lib), "HTTP p50 s": statistics.median(h),
                     "HTTP / library": statistics.median(h) / statistics.median(lib)})
    summary = {f"{what} p{q} s": percentile(values, q) for what, values in (("library", lib_all), ("HTTP", http_all))
               for q in (50, 95)}
    for q in (50, 95):
        rows.append({"scan": f"all (p{q})", "shape": f"{len(http_all)} requests",
                     "library p50 s": summary[f"library p{q} s"], "HTTP p50 s": summary[f"HTTP p{q} s"],
                     "HTTP / library": summary[f"HTTP p{q} s"] / summary[f"library p{q} s"]})
    return rows, summary


def main():
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    from extremefast.imageio import load_image
    from extremefast.pseudo import extreme_points
    from extremefast.serve.datastore import Scan
    from extremefast.serve.models import Walker, infer

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    clicks = {}
    for folder, case, label in SCANS:
        shutil.copy(SHARED / folder / "imagesTr" / f"{case}.nii.gz", tmp)
        mask = load_image(SHARED / folder / "labelsTr" / f"{case}.nii.gz", dtype=None).array == label
        clicks[case] = extreme_points(mask).tolist()
    url, server, thread = start(tmp)
    try:
        walker = Walker("CT")
        scans = {case: Scan.load(case, tmp / f"{case}.nii.gz") for _, case, _ in SCANS}
        library = {case: infer(walker, scans[case], clicks[case], {"organ": 1}).mask for case in scans}
        wall, latencies = burst(url, clicks, library)
        rows, summary = warm_rows(url, scans, clicks, args.repeat)
        report("extremefast serve: walker mask through HTTP vs the library call (warm)", rows, args,
               extra={"summary": summary, "burst_wall_s": wall, "burst_latencies_s": latencies})
        print(f"HTTP p95 {summary['HTTP p95 s']:.3f} s (target <= 1.5 s); HTTP / library at p50 "
              f"{summary['HTTP p50 s'] / summary['library p50 s']:.3f}, at p95 "
              f"{summary['HTTP p95 s'] / summary['library p95 s']:.3f} (target <= 1.15)")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
