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

SHARED = Path("/work/shared/data")
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


def main():
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    import requests

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
        session = requests.Session()

        def http(case, s=None):
            t = time.perf_counter()
            r = (s or requests).post(f"{url}/infer/extreme_points_walker?image={case}",
                                     data={"params": json.dumps({"foreground": clicks[case]})})
            r.raise_for_status()
            return time.perf_counter() - t, r

        # correctness first: eight concurrent requests on eight scans, each mask equal to the library's
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(http, scans))
        burst = time.perf_counter() - t0
        for (case, (seconds, r)) in zip(scans, answers):
            got = mask_from_multipart(r)
            if not np.array_equal(got, library[case]):
                sys.exit(f"{case}: the served mask differs from the library's")
        burst_latencies = [s for s, _ in answers]
        print(f"8 concurrent requests on 8 scans: all masks equal to the library's; wall {burst:.2f} s, "
              f"latency p50 {percentile(burst_latencies, 50):.2f} s, max {max(burst_latencies):.2f} s")

        # warm, one at a time: HTTP beside the library call on the same scans
        rows, http_all, lib_all = [], [], []
        for case in scans:
            h, lib = [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                infer(walker, scans[case], clicks[case], {"organ": 1})
                lib.append(time.perf_counter() - t)
                h.append(http(case, session)[0])
            http_all += h
            lib_all += lib
            rows.append({"scan": case, "shape": "x".join(map(str, scans[case].file_shape)),
                         "library p50 s": statistics.median(lib), "HTTP p50 s": statistics.median(h),
                         "HTTP / library": statistics.median(h) / statistics.median(lib)})
        summary = {"library p50 s": percentile(lib_all, 50), "library p95 s": percentile(lib_all, 95),
                   "HTTP p50 s": percentile(http_all, 50), "HTTP p95 s": percentile(http_all, 95)}
        rows.append({"scan": "all (p50)", "shape": f"{len(http_all)} requests",
                     "library p50 s": summary["library p50 s"], "HTTP p50 s": summary["HTTP p50 s"],
                     "HTTP / library": summary["HTTP p50 s"] / summary["library p50 s"]})
        rows.append({"scan": "all (p95)", "shape": f"{len(http_all)} requests",
                     "library p50 s": summary["library p95 s"], "HTTP p50 s": summary["HTTP p95 s"],
                     "HTTP / library": summary["HTTP p95 s"] / summary["library p95 s"]})
        report("extremefast serve: walker mask through HTTP vs the library call (warm)", rows, args,
               extra={"summary": summary, "burst_wall_s": burst, "burst_latencies_s": burst_latencies})
        print(f"HTTP p95 {summary['HTTP p95 s']:.3f} s (target <= 1.5 s); HTTP / library at p50 "
              f"{summary['HTTP p50 s'] / summary['library p50 s']:.3f}, at p95 "
              f"{summary['HTTP p95 s'] / summary['library p95 s']:.3f} (target <= 1.15)")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
