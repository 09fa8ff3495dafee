"""Shared by the benchmarks: the header every table starts with, and timed `python train.py` runs."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "torch", "torchvision", "pytorch-lightning", "hydra-core", "numpy", "scikit-learn", "opencv-python-headless",
    "dlib-bin",
)  # fmt: skip
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(packages: tuple[str, ...] = PACKAGES) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"python {platform.python_version()}, " + ", ".join(found)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def header_lines(title: str, device: str = "cpu", torch_threads: int | None = None, **settings: object) -> list[str]:
    """Machine, CPUs, load, device, versions, thread counts and the benchmark's own settings."""
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") and torch.cuda.is_available() else ""
    env = ", ".join(f"{name}={os.environ[name]}" for name in THREAD_VARIABLES if name in os.environ) or "unset"
    threads = torch_threads if torch_threads is not None else torch.get_num_threads()
    lines = [
        f"# {title}",
        f"machine: {platform.node()} {platform.machine()}, {cpu_model()}, {usable} of {os.cpu_count()} cpus usable",
        f"load average: {load_average()}",
        f"device: {device}{gpu}",
        f"versions: {versions()}",
        f"threads: torch intra-op {threads}, inter-op {torch.get_num_interop_threads()}; env {env}",
    ]
    if settings:
        lines.append("settings: " + ", ".join(f"{key}={value}" for key, value in settings.items()))
    return lines


def print_header(title: str, device: str = "cpu", torch_threads: int | None = None, **settings: object) -> None:
    print("\n".join(header_lines(title, device, torch_threads, **settings)), flush=True)


@dataclass
class TimedRun:
    """One finished command: its wall time, exit status and output."""

    seconds: float
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> TimedRun:
        if self.returncode != 0:
            tail = "\n".join((self.stdout + self.stderr).splitlines()[-25:])
            raise SystemExit(f"{what} failed (exit {self.returncode}):\n{tail}")
        return self


def run_script(
    script: str, *overrides: str, env: dict[str, str] | None = None, timeout: float | None = None
) -> TimedRun:
    """Wall time of ``python <script> <overrides>`` run from the repository root in a fresh process."""
    environment = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", **(env or {})}
    environment.pop("FACEDIAG_RUN_ID", None)  # a fresh run id per command, as from a shell
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, script, *overrides],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return TimedRun(time.perf_counter() - started, out.returncode, out.stdout, out.stderr)


def print_table(rows: list[dict[str, object]]) -> None:
    """Rows of equal keys as an aligned text table."""
    if not rows:
        return
    keys = list(rows[0])
    cells = [[f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k]) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = "  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))
