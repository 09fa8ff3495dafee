"""The README and the results summary: short, runnable as written, and every link leads to a file.

The documentation site itself is checked by `mkdocs build --strict` in .ci/run.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_stays_within_200_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_readme_quick_start_is_the_ci_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in ('pip install -e ".[dev]"', "pytest", "python train.py"):
        assert re.search(rf"^{re.escape(command)}\s", readme, re.MULTILINE), command
    assert 'python -m pip install -e ".[dev]"' in ci
    assert re.search(r"^python -m pytest$", ci, re.MULTILINE)
    assert "mkdocs build --strict" in ci


@pytest.mark.parametrize("page", ["README.md", "benchmarks/RESULTS.md"])
def test_every_relative_link_leads_to_a_file(page: str):
    source = ROOT / page
    targets = [t for t in LINK.findall(source.read_text(encoding="utf-8")) if "://" not in t]
    assert targets
    missing = [t for t in targets if not (source.parent / t).exists()]
    assert not missing, f"{page} links to missing files: {missing}"
