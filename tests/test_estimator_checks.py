"""Every scikit-learn estimator of the package passes scikit-learn's own estimator checks."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import warnings

import pytest
from sklearn.base import BaseEstimator
from sklearn.exceptions import SkipTestWarning
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator,
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
)

import facediag.classifiers
from tests.conftest import REPO


def package_estimators() -> list[type[BaseEstimator]]:
    """Every BaseEstimator subclass defined in facediag.classifiers (the wing that holds them)."""
    found = {}
    for module_info in pkgutil.iter_modules(facediag.classifiers.__path__, "facediag.classifiers."):
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseEstimator) and cls.__module__ == module.__name__:
                found[cls.__name__] = cls
    return [found[name] for name in sorted(found)]


ESTIMATORS = package_estimators()
TABULAR = [cls for cls in ESTIMATORS if get_tags(cls()).input_tags.two_d_array]
#: the checks that need no data: construction, parameters, clone, repr, tags
API_CHECKS = [check_estimator_cloneable, check_estimator_repr, check_no_attributes_set_in_init,
              check_parameters_default_constructible, check_get_params_invariance, check_set_params,
              check_do_not_raise_errors_in_init_or_set_params, check_valid_tag_types]


def test_the_estimators_of_the_package_are_all_in_the_classifiers_wing():
    defined = set()
    for path in (REPO / "facediag").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and any("BaseEstimator" in ast.unparse(b) for b in node.bases):
                defined.add(node.name)
    assert defined == {cls.__name__ for cls in ESTIMATORS}
    assert {"BlockScaler", "Chi2SVC"} <= {cls.__name__ for cls in TABULAR}


@pytest.mark.parametrize("estimator_class", TABULAR, ids=lambda cls: cls.__name__)
def test_tabular_estimator_passes_every_scikit_learn_check(estimator_class):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator_class(), on_fail=None)
    failed = [f"{r['check_name']}: {r['exception']}" for r in results if r["status"] == "failed"]
    assert failed == []
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}  # needs SCIPY_ARRAY_API set before scipy is imported
    assert len(results) > 40


@pytest.mark.parametrize("estimator_class", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_estimator_passes_the_checks_that_need_no_data(estimator_class):
    name = estimator_class.__name__
    for check in API_CHECKS:
        check(name, estimator_class())


@pytest.mark.parametrize("estimator_class", sorted(set(ESTIMATORS) - set(TABULAR), key=lambda c: c.__name__),
                         ids=lambda cls: cls.__name__)
def test_an_image_estimator_says_so_and_scikit_learns_table_checks_skip_it(estimator_class):
    with pytest.warns(SkipTestWarning, match="requires input"):
        results = check_estimator(estimator_class(), on_fail=None)
    assert [r["check_name"] for r in results if r["status"] == "failed"] == []
