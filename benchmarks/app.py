"""The app's start-up and one photo's answer: `python -m facediag.app run=<run>` until its port answers, against
`python -c "import torch, dlib, gradio"` (issue 25: start-up <= 2x those imports; one photo <= 1 s once loaded,
2 CPU cores).

Start-up rows alternate (imports, app, imports, app, ...) so that a change of load hits both alike; each is a
fresh process, timed from its start until ``import`` returns / until ``GET /`` answers 200. Then the last app
process answers London photos through the ``/predict`` API (``gradio_client``, Grad-CAM on, the run's default
method), one at a time: the per-photo time is the client's round trip (upload, detection, landmarks, crop,
score, saliency, images back). The machine's load is printed before and after.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/app.py --run <run dir> [--repeats 3] [--photos 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from common import REPO, load_average, print_header, print_table

sys.path.insert(0, str(REPO))  # facediag from this checkout, installed or not

IMPORTS = "import torch, dlib, gradio"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment(threads: int | None) -> dict[str, str]:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_ALBUMENTATIONS_UPDATE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def time_imports(threads: int | None) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], check=True, env=environment(threads), cwd=REPO)
    return time.perf_counter() - started


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_app(run: str, threads: int | None, timeout: float = 600) -> tuple[float, subprocess.Popen, str]:
    """(seconds until the page answers, the process, its URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    extra = [f"threads={threads}"] if threads else []
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "facediag.app", f"run={run}", f"port={port}", *extra],
                               env=environment(threads), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    while not answers(url):
        if process.poll() is not None:
            raise SystemExit(f"the app exited ({process.returncode}): {process.stderr.read()[-2000:]}")
        if time.perf_counter() - started > timeout:
            process.kill()
            raise SystemExit(f"the app did not answer within {timeout} s")
        time.sleep(0.05)
    return time.perf_counter() - started, process, url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def photo_times(url: str, n: int) -> list[tuple[float, str]]:
    """(seconds, top class) of ``n`` London neutral photos sent one at a time."""
    from gradio_client import Client, handle_file

    from facediag.core.config import data_dir

    photos = sorted((data_dir() / "london-faces" / "neutral").glob("*.jpg"))[:n + 1]
    client = Client(url, verbose=False)
    client.predict([handle_file(str(photos[0]))], None, None, api_name="/predict")  # the client's own first call
    times = []
    for photo in photos[1:]:
        started = time.perf_counter()
        records = client.predict([handle_file(str(photo))], None, None, api_name="/predict")[0]
        times.append((time.perf_counter() - started, f"{records[0]['status']} {records[0]['top1']}"))
        print(f"{photo.name}: {times[-1][0]:.2f} s ({times[-1][1]})", flush=True)
    return times


def row(what: str, values: list[float]) -> dict[str, object]:
    return {"what": what, "n": len(values), "median s": statistics.median(values), "min s": min(values),
            "max s": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished run dir of train.py")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes of each kind")
    parser.add_argument("--photos", type=int, default=10, help="photos answered once loaded")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the app (default torch's)")
    args = parser.parse_args()
    print_header("facediag.app: start-up and one photo", repeats=args.repeats, photos=args.photos,
                 run=args.run, app_threads=args.threads or "torch default")
    imports, starts = [], []
    process = None
    for _ in range(args.repeats):
        imports.append(time_imports(args.threads))
        if process is not None:
            stop(process)
        seconds, process, url = start_app(args.run, args.threads)
        starts.append(seconds)
        print(f"imports {imports[-1]:.2f} s, app start-up {seconds:.2f} s; load {load_average()}", flush=True)
    assert process is not None
    try:
        photos = photo_times(url, args.photos)
    finally:
        stop(process)
    per_photo = [seconds for seconds, _ in photos]
    print_table([row(f'python -c "{IMPORTS}"', imports), row("python -m facediag.app (until the port answers)", starts),
                 row("one photo via /predict, loaded (gradcam)", per_photo)])
    ratio = statistics.median(starts) / statistics.median(imports)
    print(f"\nstart-up / imports: {ratio:.2f}x (target <= 2); one photo: median {statistics.median(per_photo):.2f} s "
          f"(target <= 1 s); answers: {sorted({label for _, label in photos})}")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
