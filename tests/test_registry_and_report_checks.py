"""Small contracts with a message each: the strategy registry (a taken name, a class without ``fit``, a
``_target_`` that cannot be imported or is not registered, an unknown name) and the report's building blocks
(numbers, counts, code blocks, row styles that do not fit, a figure that is not there)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from facediag.evaluation.report import MISSING, Report, fmt_count, fmt_number
from facediag.strategies.registry import available, register_strategy, strategy_class, trait, uses_backbone


class NoFit:
    """A would-be strategy that forgot ``fit``."""


def test_a_strategy_name_is_registered_once_and_a_strategy_needs_fit():
    assert strategy_class({"name": "dtl2"}).registered_name == "dtl2"  # the package's own imported first
    with pytest.raises(ValueError, match="strategy name 'dtl2' is taken by facediag.strategies.dtl2."):
        register_strategy("dtl2", predictor=type("P", (), {}))(type("Other", (), {"fit": lambda self, job: None}))
    with pytest.raises(TypeError, match="strategy NoFit has no fit.job. method"):
        register_strategy("no_fit_xyz", predictor=type("P", (), {}))(NoFit)
    assert "no_fit_xyz" not in available() and {"dtl1", "dtl2", "dsift"} <= set(available())


def test_a_strategy_config_that_names_nothing_known_is_refused_but_still_evaluates_with_defaults():
    with pytest.raises(ValueError, match="strategy _target_ 'no_such_module_xyz.Thing' cannot be imported"):
        strategy_class({"_target_": "no_such_module_xyz.Thing"})
    with pytest.raises(ValueError, match="strategy tests.test_registry_and_report_checks.NoFit is not registered"):
        strategy_class({"_target_": "tests.test_registry_and_report_checks.NoFit"})
    with pytest.raises(ValueError, match=r"unknown strategy 'gone_xyz'; registered: \[.*'dtl2'"):
        strategy_class({"name": "gone_xyz"})
    assert trait({"name": "gone_xyz"}, "uses_backbone", "default") == "default"
    assert uses_backbone({"name": "gone_xyz"}) and not uses_backbone({"name": "gone_xyz", "uses_backbone": False})
    assert uses_backbone({"name": "dtl2"}) and not uses_backbone({"name": "dsift"})


def test_report_numbers_read_as_people_write_them():
    assert fmt_number(7) == "7" and fmt_number(0.12345) == "0.123" and fmt_number(math.nan) == MISSING
    assert fmt_number(True) == "1.000"
    assert [fmt_count(v) for v in (1.5e9, 2.5e6, 12_300, 42, None)] == ["1.5 G", "2.5 M", "12.3 k", "42", MISSING]


def test_a_report_shows_code_blocks_and_refuses_row_styles_or_figures_that_do_not_fit(tmp_path):
    report = Report("check").code("python train.py strategy=dtl2\n")
    assert "```\npython train.py strategy=dtl2\n```" in report.to_markdown(tmp_path)
    assert "<pre>python train.py strategy=dtl2\n</pre>" in report.to_html()
    with pytest.raises(ValueError, match="row_classes has 1 entries for 2 rows"):
        report.table(pd.DataFrame({"a": [1, 2]}), row_classes=["best"])
    with pytest.raises(FileNotFoundError, match=f"report figure {tmp_path / 'roc.png'} does not exist"):
        report.figure(tmp_path / "roc.png")
