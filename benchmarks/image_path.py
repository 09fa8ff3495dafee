"""Which facediag files one demo image passes through, from its file on disk to the run's accuracy.

Definition (what the count means). The tiny demo (``python train.py`` with the overrides below) runs twice in
this interpreter, as ``train.py`` runs it (the ``train`` config composed by Hydra, ``facediag.training.train``):
first untraced, which fills the caches and picks the image (the first test row of its ``split.csv``), then under
``sys.setprofile`` on a warm cache (landmarks, crops and features cached, as a user's second run). A facediag
function *handles the image* when one of its arguments (as it is called) or its return value carries it: the
image's path or sha256 as a string, a list / tuple / set / dict holding one of them, a pandas table or column
holding one, or an object (a record, a dataclass, a job) with such a value among its attributes (one level down).
The script prints every facediag source file with at least one such call (its first such function, in call
order) and their count, and marks the files reached only under a side output of the run (the QA grid, the
face-blind and capture-only controls: :data:`SIDE_OUTPUTS`) apart from those on the method's path to the
metric. Arrays of pixels or features carry no name, so a function that sees only them (a CNN's forward pass) is
not counted; the files that hand those arrays on are. Work in worker processes (a cold preprocessing pass) is not
seen. ``controls=[]`` leaves out the controls the demo trains beside the method.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/image_path.py [override ...]
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's facediag, not an installed one

TINY = ["data.max_subjects_per_class=6", "data.n_folds=3", "strategy.C_grid=[1.0]", "logger=none",
        "preprocess.progress=false"]


def compose(out_dir: Path, overrides: list[str]) -> Any:
    """The ``train`` config of a run in ``out_dir``, with the resolvers and generated groups ``train.py`` has."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from facediag.core.config import CONFIG_DIR

    try:
        from facediag.training.config import register_configs
    except ImportError:  # a checkout from before facediag.training.config
        from facediag.core.config import register_resolvers as register_configs
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=[f"paths.output_dir={out_dir}", *overrides])


def carries(value: Any, names: frozenset[str], depth: int = 1) -> bool:
    """Whether ``value`` carries one of ``names`` (the image's path, sha256) as the docstring defines it."""
    import pandas as pd

    if isinstance(value, str):
        return value in names
    if isinstance(value, Path):
        return str(value) in names
    if isinstance(value, pd.DataFrame):
        return any(carries(value[c], names) for c in value.columns)
    if isinstance(value, pd.Series):
        textual = pd.api.types.is_object_dtype(value) or pd.api.types.is_string_dtype(value)
        return textual and bool(value.isin(names).any())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(carries(v, names, depth) for v in value) if depth >= 0 else False
    if isinstance(value, dict):
        return any(carries(v, names, depth) for v in value.values())
    if depth > 0 and (dataclasses.is_dataclass(value) or hasattr(value, "__dict__")) and not isinstance(value, type):
        attributes = vars(value) if hasattr(value, "__dict__") else {}
        return any(carries(v, names, depth - 1) for v in attributes.values())
    return False


#: side outputs of a run (a function that makes one -> its name): files reached only under them are listed apart
SIDE_OUTPUTS = {"qa_grid": "QA grid", "run_controls": "controls"}
METHOD = "method"


def branch(frame: Any) -> str:
    """The side output a frame runs under (:data:`SIDE_OUTPUTS`), else :data:`METHOD` (the path to the metric)."""
    while frame is not None:
        if frame.f_code.co_name in SIDE_OUTPUTS:
            return SIDE_OUTPUTS[frame.f_code.co_name]
        frame = frame.f_back
    return METHOD


def trace(cfg: Any, names: frozenset[str]) -> dict[str, tuple[str, str]]:
    """Run the job under a profiler: {facediag file: (its first function called with the image, the branch)}, in
    call order; a file that handles the image on the method's path is on it, whatever else calls it."""
    from facediag.training.train import train

    package = str(REPO / "facediag") + "/"
    seen: dict[str, tuple[str, str]] = {}
    failures: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event not in ("call", "return"):
            return
        file = frame.f_code.co_filename
        if not file.startswith(package) or seen.get(file, ("", ""))[1] == METHOD:
            return
        arguments = frame.f_code.co_varnames[: frame.f_code.co_argcount + frame.f_code.co_kwonlyargcount]
        local = frame.f_locals
        try:
            if event == "call":
                found = any(name in local and carries(local[name], names) for name in arguments)
            else:
                found = carries(arg, names)
        except Exception as err:  # noqa: BLE001  (an exception here would switch the profiler off)
            failures.append(f"{frame.f_code.co_qualname}: {type(err).__name__}: {err}")
            return
        if not found:
            return
        where = branch(frame)
        if file not in seen or where == METHOD:
            seen[file] = (frame.f_code.co_qualname, where)

    sys.setprofile(profile)
    try:
        train(cfg)
    finally:
        sys.setprofile(None)
    if failures:
        print(f"{len(failures)} calls not inspected, e.g. {failures[:3]}")
    return seen


def main(overrides: list[str]) -> None:
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="image_path_") as tmp:
        first = Path(tmp) / "first"
        from facediag.training.train import train

        train(compose(first, [*TINY, *overrides]))
        split = pd.read_csv(first / "split.csv")
        row = split[split["role"] == "test"].iloc[0]
        names = frozenset({str(row["path"]), str(row["sha256"])})
        files = trace(compose(Path(tmp) / "traced", [*TINY, *overrides]), names)
    print(f"\nimage: {row['path']} (test, {row['label']})")
    print(f"facediag files that handle it, disk -> accuracy ({len(files)}):")
    for file, (function, where) in files.items():
        print(f"  {str(Path(file).relative_to(REPO)):<40} {where:<9} ({function})")
    on_path = sum(where == METHOD for _, where in files.values())
    print(f"count: {len(files)} files; {on_path} on the method's path, {len(files) - on_path} only under side "
          f"outputs ({', '.join(SIDE_OUTPUTS.values())})")


if __name__ == "__main__":
    main(sys.argv[1:])
