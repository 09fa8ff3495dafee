"""The apps' start-up: cyclic collection paused while libraries import, then the heap frozen once."""

import subprocess
import sys

from tests.conftest import REPO

CHECK = """
import gc
from facediag.core.startup import pause_collection, resume_collection

pause_collection()
assert not gc.isenabled()
import json, numpy  # the libraries, imported while paused
resume_collection()
frozen = gc.get_freeze_count()
assert gc.isenabled() and frozen > 0, frozen
job = [[] for _ in range(1000)]  # a job's objects
resume_collection()  # a multirun's next job
pause_collection()
assert gc.isenabled() and gc.get_freeze_count() == frozen, "a later job paused or froze again"
"""


def assert_fresh_python_runs(code: str) -> None:
    """``code`` runs without error in a fresh interpreter (the collector's state is per process)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr


def test_collection_pauses_until_resumed_then_freezes_once_and_never_again():
    assert_fresh_python_runs(CHECK)


def test_an_app_that_never_paused_is_left_alone():
    code = (
        "import gc; from facediag.core.startup import resume_collection; resume_collection(); "
        "assert gc.isenabled() and gc.get_freeze_count() == 0"
    )
    assert_fresh_python_runs(code)


def test_calling_predict_main_in_process_leaves_the_callers_collector_alone():
    code = (
        "import gc\nfrom facediag.apply.predict import main\ntry:\n    main([])\nexcept SystemExit:\n    pass\n"
        "assert gc.isenabled() and gc.get_freeze_count() == 0, (gc.isenabled(), gc.get_freeze_count())"
    )
    assert_fresh_python_runs(code)
