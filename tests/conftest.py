"""Shared fixtures: the London demo faces (skipped with a reason when absent), tiny generated trees, finished tiny
runs trained once per session (``tiny_run``, ``tiny_*_run``, ``finished_run``) and ``run_python``, which runs an
entry point (``train.py``, ``evaluate.py``, ``-m facediag.<tool>``) in this interpreter or, for a smoke test, in a
new process. The session's environment is pinned first: the user's shell changes no result."""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import runpy
import shutil
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facediag.core.config import RUN_ID_ENV, data_dir
from facediag.core.startup import resume_collection
from facediag.data.locate import DemoDataUnavailable, london_faces

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
#: glibc's allocator for the processes this session starts (pytest -n workers, entry points run as new processes):
#: freed memory kept for reuse instead of handed back to the system and faulted in again for the next tensor.
#: tests/test_fused.py alone (-n 0): 4.8 M -> 0.5 M page faults, system time 19 -> 5 s, 68.6 -> 63.9 s wall
#: (2026-12-08). Allocation only: no result changes. The user's own settings win.
MALLOC = {"MALLOC_TRIM_THRESHOLD_": "2147483647", "MALLOC_TOP_PAD_": "268435456",
          "MALLOC_MMAP_THRESHOLD_": "2147483647"}
#: one compute thread per process: with two pytest workers on two cores, OpenMP's and OpenBLAS's pools of two threads
#: per process wait on each other. tests/test_explain.py, test_data_build.py and test_skin_colour.py (-n 0, some
#: entry points as new processes): 88.4 -> 79.5 s user time; test_simulate.py and test_controls.py 101.4 -> 85.3 s
#: (2026-12-08). The user's own settings win.
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
for _name, _value in (MALLOC | THREADS).items():
    os.environ.setdefault(_name, _value)
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = data_dir()  # the demo's resolver: FACEDIAG_DATA_DIR (made absolute), else <repo>/data


def pin_environment() -> None:
    """The user's shell does not change what the tests see: no ``HYDRA_FULL_ERROR`` (tracebacks instead of the
    tools' one-line messages), no inherited ``FACEDIAG_RUN_ID`` (run dirs of separate runs would share it);
    ``FACEDIAG_DATA_DIR`` made absolute (the folder only locates the faces); ``FACEDIAG_CACHE_DIR`` is replaced by
    the session's own cache once the session starts (``shared_cache``: caches are keyed by content, so where they
    live changes no result)."""
    os.environ.pop("HYDRA_FULL_ERROR", None)
    for name in [n for n in os.environ if n.startswith("FACEDIAG_")]:
        if name not in ("FACEDIAG_DATA_DIR", "FACEDIAG_CACHE_DIR"):
            del os.environ[name]
    os.environ["FACEDIAG_DATA_DIR"] = str(DATA_DIR)


pin_environment()
resume_collection()  # the test process is no app: an entry point run in it never pauses its collector

#: test files whose work starts first under ``pytest -n`` (pyproject: one file per worker at a time), the costliest
#: first so that the workers finish together (longest first: seconds per file in a whole-suite run's junit XML,
#: 2026-12-08); files under 5 s follow in their own order and fill the gaps
SLOWEST_FIRST = ("test_strategies", "test_simulate", "test_fused", "test_explain", "test_models", "test_sweeps",
                 "test_data_build", "test_external_validation", "test_controls", "test_app", "test_presets",
                 "test_config_groups", "test_identity_leaks", "test_report", "test_preprocess", "test_curves",
                 "test_audit", "test_hostile_folder", "test_train_data_stage", "test_imports", "test_harmonise",
                 "test_compare", "test_capture", "test_dsift", "test_permutation", "test_evaluate", "test_flags",
                 "test_predict", "test_linear_svm", "test_gallery", "test_toy_strategy", "test_toy_backbone",
                 "test_fan")


def pytest_sessionstart(session: pytest.Session) -> None:
    """The objects of the imports so far (torch, the package) go to the collector's permanent generation: full
    collections no longer walk them (again after collection, ``pytest_collection_finish``). Three test files alone
    (-n 0): the collector's time 4.4-5.2 -> 2.2 s, the tests' 49.6-52.2 -> 40.8 s (2026-12-08)."""
    gc.freeze()


def pytest_collection_finish(session: pytest.Session) -> None:
    """See ``pytest_sessionstart``: the test modules' imports frozen too."""
    gc.freeze()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of ``SLOWEST_FIRST`` first, in its order; every file's tests keep their order."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def new_process_environment() -> dict[str, str]:
    """This process's environment less its run id (``FACEDIAG_RUN_ID``: a new process tree draws its own)."""
    return {name: value for name, value in os.environ.items() if name != RUN_ID_ENV}


def run_python(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, fresh: bool = False,
               timeout: int = 900) -> subprocess.CompletedProcess:
    """``python <args>`` (``train.py ...``, ``evaluate.py ...`` or ``-m facediag.<tool> ...``) run from ``cwd``
    with ``env`` added: the exit status and printed output, as a shell would see them.

    By default in this interpreter (libraries imported once, ~6 s saved per call): ``sys.argv``, the working
    directory and the environment set as for a new process, then restored; ``fresh=True`` starts a real
    process (one smoke test per entry point).
    """
    if fresh:
        return subprocess.run([sys.executable, *args], cwd=cwd, env={**new_process_environment(), **(env or {})},
                              capture_output=True, text=True, timeout=timeout)
    out, err = io.StringIO(), io.StringIO()
    with _as_new_process(args, cwd, env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if args[0] == "-m":
                with warnings.catch_warnings():  # runpy: "found in sys.modules ... prior to execution"
                    warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
                    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(str(Path(cwd, args[0])), run_name="__main__")
            returncode = 0
        except SystemExit as done:  # sys.exit(code) as the interpreter reports it
            if done.code is None or isinstance(done.code, int):
                returncode = done.code or 0
            else:
                print(done.code, file=sys.stderr)
                returncode = 1
        except Exception:  # an uncaught exception: the traceback on stderr, status 1
            traceback.print_exc()
            returncode = 1
    return subprocess.CompletedProcess(["python", *args], returncode, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _as_new_process(args: tuple[str, ...], cwd: Path, env: dict[str, str] | None):
    """argv, working directory, environment and a run id of a new process; the logging, Hydra and process
    state the app changes restored afterwards."""
    from hydra.core.hydra_config import HydraConfig

    saved_argv, saved_env, saved_cwd = sys.argv[:], dict(os.environ), os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    os.environ.pop(RUN_ID_ENV, None)  # a new process draws its own run id
    os.environ.update(env or {})
    sys.argv = list(args[1:]) if args[0] == "-m" else list(args)  # runpy sets argv[0] to the module file
    os.chdir(cwd)
    try:
        yield
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        HydraConfig.instance().cfg = None  # the app's run is over (a later in-process call sees no Hydra run)


@pytest.fixture(scope="session")
def london_dir() -> Path:
    """The London set folder, found (or fetched) as the demo does; skips the test with the reason otherwise."""
    try:
        return london_faces()
    except DemoDataUnavailable as err:
        pytest.skip(str(err))


def write_image(path: Path, seed: int, size: tuple[int, int] = (24, 24)) -> Path:
    """A small random RGB JPEG/PNG (content differs by seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def class_tree(tmp_path: Path):
    """Factory: `<tmp>/<class>/<n>.png` with ``n_per_class`` distinct images per class folder."""

    def make(folders: list[str], n_per_class: int) -> Path:
        seed = 0
        for folder in folders:
            for i in range(n_per_class):
                write_image(tmp_path / "root" / folder / f"img{i:03d}.png", seed)
                seed += 1
        return tmp_path / "root"

    return make


@pytest.fixture
def http_server(tmp_path: Path):
    """A real HTTP server on 127.0.0.1 serving ``<tmp>/www``; yields (www folder, base URL)."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def compose_train(out_dir: Path, *overrides: str, cache_dir: Path | None = None):
    """The composed `train` config for a run in ``out_dir`` (no Hydra runtime needed)."""
    from hydra import compose, initialize_config_dir

    from facediag.core.config import CONFIG_DIR
    from facediag.training.config import register_configs

    register_configs()
    base = [f"paths.output_dir={out_dir}", f"paths.data_dir={DATA_DIR}"]
    if cache_dir is not None:
        base.append(f"paths.cache_dir={cache_dir}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[*base, *overrides])


def session_folder(tmp_path_factory, name: str) -> Path:
    """``<name>`` in the folder every worker of this session shares (``pytest -n``: the workers' base temp
    folders sit side by side in it; else the session's own base temp folder)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def built_once(folder: Path, build: Callable[[Path], object]) -> Path:
    """``folder``, built by ``build(folder)`` in whichever worker of this session asks first; the others wait for
    it and share it (a failed build leaves no mark: the next asker tries again and sees the same error)."""
    from filelock import FileLock

    done = folder.with_name(folder.name + ".done")
    with FileLock(folder.with_name(folder.name + ".lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory) -> Iterator[Path]:
    """One preprocessing/feature cache for the whole session and all its workers, cold at the start (the user's
    cache is never read or written): ``FACEDIAG_CACHE_DIR`` points to it, so runs on the default cache and runs
    given ``paths.cache_dir=<shared_cache>`` detect each London face once."""
    cache = session_folder(tmp_path_factory, "cache")
    saved = os.environ.get("FACEDIAG_CACHE_DIR")
    os.environ["FACEDIAG_CACHE_DIR"] = str(cache)
    yield cache
    if saved is None:
        os.environ.pop("FACEDIAG_CACHE_DIR", None)
    else:
        os.environ["FACEDIAG_CACHE_DIR"] = saved


TINY = ["data.max_subjects_per_class=6", "data.n_folds=3", "preprocess.n_workers=1", "preprocess.progress=false",
        "logger=none"]


def train_cli(run_dir: Path, cache_dir: Path, *overrides: str) -> Path:
    """A finished tiny run made the way users make one, `python train.py ...` (run in this interpreter)."""
    result = run_python("train.py", *TINY, "num_threads=1", f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache_dir}",
                        f"paths.data_dir={DATA_DIR}", *overrides)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, shared_cache, london_dir):
    """Factory: ``tiny_run(*overrides)`` -> the dir of a finished tiny run (``TINY``: 6 London people per class,
    3 folds, the shared cache) trained through train.py in this interpreter, once per session (and its workers) for
    each distinct list of overrides. Tests that only read or apply a run share it; one that changes its files copies
    it first (``shutil.copytree``)."""
    import hashlib

    runs = session_folder(tmp_path_factory, "tiny_runs")

    def finished(*overrides: str) -> Path:
        key = hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:16]
        return built_once(runs / key, lambda run_dir: train_cli(run_dir, shared_cache, *overrides))

    return finished


@pytest.fixture(scope="session")
def tiny_dtl2_run(tiny_run) -> Path:
    """A finished tiny DTL2 run: dlib ResNet features, a linear SVM with C = 1 (task sex), with its controls
    (face-blind, capture-only: train.yaml ``controls``)."""
    return tiny_run("strategy=dtl2", "strategy.C_grid=[1.0]")


@pytest.fixture(scope="session")
def tiny_dtl1_run(tiny_run) -> Path:
    """A finished tiny DTL1 run, `strategy=dtl1` defaults (no head_norm): dlib ResNet fine-tuned for one epoch."""
    return tiny_run("strategy=dtl1", "strategy.max_epochs=1", "data.batch_size=16")


@pytest.fixture(scope="session")
def tiny_dtl1_head_norm_run(tiny_run) -> Path:
    """A finished tiny DTL1 run of the CPU preset (head_norm: true, as optuna_dtl1_lr's jobs), one epoch."""
    return tiny_run("method=dlib_resnet_dlib_faces_dtl1_cpu", "strategy.max_epochs=1")


@pytest.fixture(scope="session")
def tiny_dsift_run(tiny_run) -> Path:
    """A finished tiny DSIFT run (16 visual words on a coarse grid), both SVM variants, with its controls (each
    compared per variant)."""
    return tiny_run("strategy=dsift", "strategy.n_words=16", "strategy.step=12", "strategy.C_grid=[1.0]")


FUSED = ["data.task=sex_expression", "strategy.C_grid=[0.1,1.0]", "strategy.cv_folds=3", "controls=[]"]


@pytest.fixture(scope="session")
def tiny_fused_run(tiny_run) -> Path:
    """A finished tiny fused DTL2 run (dlib ResNet + EfficientNet-Lite0 sources, two Cs, task sex x expression), no
    controls (each would extract both sources' features again)."""
    return tiny_run("method=dlib_resnet_efficientnet_lite0_dtl2_fused", *FUSED)


@pytest.fixture(params=["tiny_dtl1_run", "tiny_dtl1_head_norm_run", "tiny_dtl2_run", "tiny_dsift_run"])
def finished_run(request) -> Path:
    """Each tiny finished run in turn: DTL1 (head_norm off and on), DTL2, DSIFT."""
    return request.getfixturevalue(request.param)


def own_scores(run_dir: Path, variant: str | None = None):
    """The run's own test-time scores (predictions.csv) of one variant (default the first), indexed by path."""
    import pandas as pd

    predictions = pd.read_csv(run_dir / "predictions.csv")
    variant = variant or predictions["variant"].iloc[0]
    return predictions[predictions["variant"] == variant].set_index("path")


@pytest.fixture(scope="session")
def london_chips(london_dir: Path) -> np.ndarray:
    """150x150 chips of the first London faces (six), made with dlib exactly as its docs say:
    HOG detection (on a half-size copy, boxes scaled back), 5-point shape, ``dlib.get_face_chip(padding=0.25)``."""
    import importlib.resources

    dlib = pytest.importorskip("dlib")
    models = importlib.resources.files("face_recognition_models") / "models"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    chips = []
    for image_path in sorted((london_dir / "neutral").glob("*.jpg"))[:8]:
        image = dlib.load_rgb_image(str(image_path))
        detections = detector(np.ascontiguousarray(image[::2, ::2]), 0)
        if len(detections) != 1:
            continue
        box = detections[0]
        rect = dlib.rectangle(box.left() * 2, box.top() * 2, box.right() * 2, box.bottom() * 2)
        chips.append(dlib.get_face_chip(image, predictor(image, rect), size=150, padding=0.25))
        if len(chips) == 6:
            break
    assert len(chips) >= 5, "dlib found fewer than 5 single faces in the London set"
    return np.stack(chips)
