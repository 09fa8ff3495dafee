"""A shortcut cannot win the choice: validation accuracy a face-blind control also reaches earns nothing."""

from types import SimpleNamespace

import pytest

from facediag.evaluation.compare import choose_on_validation, control_penalty, validation_value


def row(val_accuracy, control_val=None, chance=0.5, variant="dtl2"):
    stored = {"strategy": "dtl2", "val_accuracy": val_accuracy, "variants": {}}
    if control_val is not None:
        stored["controls"] = {"face_blind": {variant: {"val_accuracy": control_val, "val_chance": chance}},
                              "capture_only": {variant: {"val_accuracy": chance - 0.1, "val_chance": chance}}}
    entry = SimpleNamespace(run=SimpleNamespace(stored_metrics=stored))
    return SimpleNamespace(entries=[entry], variant=variant, failed=False)


def test_the_penalty_is_what_the_best_control_earns_above_chance_on_validation():
    assert control_penalty(row(0.99, 0.95).entries[0].run.stored_metrics, "dtl2") == pytest.approx(0.45)
    assert control_penalty(row(0.9, 0.4).entries[0].run.stored_metrics, "dtl2") == 0.0  # below chance: no bonus
    assert validation_value(row(0.99, 0.95)) == pytest.approx(0.54)
    assert validation_value(row(0.99, 0.95), penalised=False) == pytest.approx(0.99)


def test_a_design_whose_validation_a_face_blind_reader_matches_loses_to_one_that_reads_the_face():
    shortcut, face = row(0.99, control_val=0.95), row(0.90, control_val=0.55)
    assert choose_on_validation([shortcut, face]) is face
    # without controls (runs made before them) the raw validation accuracy decides, as before
    assert choose_on_validation([row(0.99), row(0.90)]).entries[0].run.stored_metrics["val_accuracy"] == 0.99
