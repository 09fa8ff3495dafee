from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facediag.data.splits import (
    EXCLUDED,
    PAPER_FULL,
    PAPER_NO_FIT,
    LeakError,
    SplitError,
    carve_validation,
    check_no_leak,
    kfold_split,
    large_people,
    make_split,
    paper_split,
    subsample_training,
)


def people(n_people: int = 60, images_each: int = 2, n_classes: int = 2):
    subjects = np.repeat([f"p{i:03d}" for i in range(n_people)], images_each)
    labels = np.repeat([f"c{i % n_classes}" for i in range(n_people)], images_each)
    return labels, subjects


def sides_are_disjoint(roles, subjects) -> bool:
    by_role = {r: set(subjects[roles == r]) for r in set(roles) if r}
    names = list(by_role)
    return all(not (by_role[a] & by_role[b]) for i, a in enumerate(names) for b in names[i + 1 :])


def test_paper_split_takes_n_test_and_n_train_images_per_class():
    labels = np.repeat(["D1", "N0"], 70)
    subjects = np.array([f"s{i}" for i in range(140)])
    roles = paper_split(labels, subjects, n_train=40, n_test=30, seed=3)
    for label in ("D1", "N0"):
        assert (roles[labels == label] == "test").sum() == 30
        assert (roles[labels == label] == "train").sum() == 40


def test_paper_split_is_reproducible_by_seed_and_changes_with_it():
    labels = np.repeat(["D1", "N0"], 70)
    subjects = np.array([f"s{i}" for i in range(140)])
    first = paper_split(labels, subjects, seed=1)
    assert (first == paper_split(labels, subjects, seed=1)).all()
    assert (first != paper_split(labels, subjects, seed=2)).any()


def test_paper_split_keeps_a_person_with_several_images_on_one_side():
    labels, subjects = people(70, 2)
    roles = paper_split(labels, subjects, n_train=20, n_test=20, seed=0)
    assert sides_are_disjoint(roles, subjects)


@pytest.mark.parametrize("fold", [0, 1, 2, 3])
def test_kfold_keeps_subjects_on_one_side_and_is_stratified(fold):
    labels, subjects = people(80, 2)
    roles = kfold_split(labels, subjects, n_folds=4, fold=fold, seed=5)
    assert sides_are_disjoint(roles, subjects)
    test_labels = labels[roles == "test"]
    assert abs((test_labels == "c0").mean() - 0.5) < 0.1


def test_kfold_folds_cover_every_image_once_per_repeat():
    labels, subjects = people(40, 2)
    counts = sum((kfold_split(labels, subjects, n_folds=4, fold=f, seed=0) == "test").astype(int) for f in range(4))
    assert (counts == 1).all()


def test_repeated_kfold_differs_by_split_seed_and_repeats_by_seed():
    labels, subjects = people(40, 2)
    a = kfold_split(labels, subjects, n_folds=4, fold=0, seed=0)
    assert (a == kfold_split(labels, subjects, n_folds=4, fold=0, seed=0)).all()
    assert (a != kfold_split(labels, subjects, n_folds=4, fold=0, seed=1)).any()


def test_validation_is_carved_from_training_only_and_by_subject():
    labels, subjects = people(60, 2)
    roles = kfold_split(labels, subjects, n_folds=3, fold=0, seed=0)
    carved = carve_validation(roles, labels, subjects, val_size=0.25, seed=0)
    assert ((roles == "test") == (carved == "test")).all()
    assert (carved == "val").sum() > 0 and ((carved == "val") <= (roles == "train")).all()
    assert sides_are_disjoint(carved, subjects)


def table(paths, labels, subjects, digests, roles):
    return pd.DataFrame({"path": paths, "label": labels, "subject": subjects, "sha256": digests, "role": roles})


def test_leak_guard_names_the_files_of_a_subject_on_both_sides():
    frame = table(
        ["a.jpg", "b.jpg", "c.jpg"], ["x", "x", "y"], ["p1", "p1", "p2"], ["1", "2", "3"], ["train", "test", "train"]
    )
    with pytest.raises(LeakError, match=r"a\.jpg.*b\.jpg"):
        check_no_leak(frame)


def test_leak_guard_fires_on_identical_bytes_across_sides():
    frame = table(["a.jpg", "copy_of_a.jpg"], ["x", "x"], ["p1", "p2"], ["same", "same"], ["train", "test"])
    with pytest.raises(LeakError, match="identical image bytes.*copy_of_a.jpg"):
        check_no_leak(frame)


def test_leak_guard_fires_on_identical_bytes_under_two_labels():
    frame = table(["a.jpg", "a2.jpg"], ["x", "y"], ["p1", "p1"], ["same", "same"], ["train", "train"])
    with pytest.raises(LeakError, match="several labels"):
        check_no_leak(frame)


def test_make_split_refuses_duplicate_images_of_different_people():
    labels, subjects = people(20, 1)
    digests = [f"h{i}" for i in range(20)]
    digests[1] = digests[0]  # the same photo filed under two people: kfold may separate them
    frame = pd.DataFrame(
        {"path": [f"{s}.jpg" for s in subjects], "label": labels, "subject": subjects, "sha256": digests}
    )
    outcomes = []
    for seed in range(6):
        try:
            make_split(frame, kind="kfold", n_folds=2, split_seed=seed, val_size=0)
            outcomes.append("ok")
        except LeakError as err:
            assert "p000.jpg" in str(err) and "p001.jpg" in str(err)
            outcomes.append("refused")
    assert "refused" in outcomes


def test_make_split_writes_the_contract_columns():
    labels, subjects = people(30, 2)
    frame = pd.DataFrame(
        {
            "path": [f"{i}.jpg" for i in range(60)],
            "label": labels,
            "subject": subjects,
            "sha256": [str(i) for i in range(60)],
        }
    )
    split = make_split(frame, kind="kfold", n_folds=3)
    assert list(split.columns)[:5] == ["path", "subject", "label", "role", "fold"]
    assert set(split["role"]) == {"train", "val", "test"}


def test_a_short_class_under_the_paper_split_is_named_with_its_count(capsys):
    from omegaconf import OmegaConf

    from facediag.data.build import warn_short_classes
    from facediag.data.splits import short_classes

    labels = ["a"] * 70 + ["b"] * 40
    assert short_classes(labels, n_train=40, n_test=30) == {"b": 40}
    cfg = OmegaConf.create({"split": "paper", "n_train": 40, "n_test": 30})
    warn_short_classes(pd.DataFrame({"label": labels}), cfg)
    out = capsys.readouterr().out
    assert "{'b': 40}" in out and "data.split=kfold" in out


def expression_table(n_people: int = 40) -> pd.DataFrame:
    """London-like: every person has a neutral and a smiling photo (one person, two classes)."""
    subjects = np.repeat([f"p{i:03d}" for i in range(n_people)], 2)
    labels = np.tile(["neutral", "smiling"], n_people)
    paths = [f"{s}_{lab}.jpg" for s, lab in zip(subjects, labels, strict=True)]
    return pd.DataFrame({"path": paths, "subject": subjects, "label": labels, "sha256": paths})


@pytest.mark.parametrize("kind", ["kfold", "paper"])
def test_train_subjects_per_class_keeps_the_test_part_identical(kind):
    labels, subjects = people(n_people=80)
    table = pd.DataFrame({"path": [f"{i}.jpg" for i in range(len(labels))], "subject": subjects, "label": labels})
    table["sha256"] = table["path"]
    options = dict(kind=kind, n_folds=4, fold=2, split_seed=7, n_train=40, n_test=20)
    full = make_split(table, **options)
    small = make_split(table, train_subjects_per_class=5, **options)
    test = full.loc[full.role == "test", "path"].tolist()
    assert small.loc[small.role == "test", "path"].tolist() == test
    fit = small[small.role.isin(["train", "val"])]
    assert fit.groupby("label")["subject"].nunique().to_dict() == {"c0": 5, "c1": 5}
    assert (small.role == "val").any() and set(fit["subject"]) <= set(full.loc[full.role != "test", "subject"])


def test_train_subsets_are_nested_and_count_people_per_class_they_have_photos_in():
    table = expression_table()
    roles = kfold_split(table["label"], table["subject"], n_folds=5, fold=0, seed=1)
    kept = {}
    for n in (5, 10, 20):
        sub = subsample_training(roles, table["label"], table["subject"], n, seed=1)
        assert (sub[roles == "test"] == "test").all()
        train = table[sub == "train"]
        # one person has a photo in both classes: n people give each class n people (not 2n)
        assert train.groupby("label")["subject"].nunique().to_dict() == {"neutral": n, "smiling": n}
        kept[n] = set(train["subject"])
    assert kept[5] < kept[10] < kept[20]


def test_train_subjects_per_class_refuses_more_people_than_the_training_part_has():
    labels, subjects = people(n_people=20)
    roles = kfold_split(labels, subjects, n_folds=2, fold=0, seed=0)
    with pytest.raises(ValueError, match=r"class 'c\d' has 5 people in the training part, fewer than "
                                         r"train_subjects_per_class=6"):
        subsample_training(roles, labels, subjects, 6)


def one_large_person(n_large: int = 30, n_others: int = 10, n_other_class: int = 70) -> pd.DataFrame:
    """Class 'b': one person with ``n_large`` photos and ``n_others`` people with one; class 'a': singles."""
    subjects = ["big"] * n_large + [f"b{i}" for i in range(n_others)] + [f"a{i}" for i in range(n_other_class)]
    labels = ["b"] * (n_large + n_others) + ["a"] * n_other_class
    paths = [f"{i}.jpg" for i in range(len(subjects))]
    return pd.DataFrame({"path": paths, "subject": subjects, "label": labels, "sha256": paths})


def test_a_class_left_without_training_images_by_one_large_person_is_refused_naming_them():
    # issue 21: 30 photos of one person in a 40-photo class gave 0 training and 10 test images, silently
    with pytest.raises(SplitError, match=r"class 'b' has no train image .*largest people: big 30"):
        make_split(one_large_person(), kind="paper", n_train=20, n_test=15)


def test_every_input_row_keeps_a_row_with_its_role_or_the_reason_it_was_left_out():
    table = one_large_person(n_large=25, n_others=40)  # 25 photos fit neither 10 test nor 20 training places
    split = make_split(table, kind="paper", n_train=20, n_test=10, keep_excluded=True)

    assert split["path"].tolist() == table["path"].tolist() and list(split.columns)[-1] == "reason"
    assert set(split["role"]) == {"train", "val", "test", EXCLUDED}
    left_out = split["role"] == EXCLUDED
    assert (split.loc[left_out, "reason"] != "").all() and (split.loc[~left_out, "reason"] == "").all()
    big = split[split["subject"] == "big"]
    assert (big["role"] == EXCLUDED).all()
    assert big["reason"].str.startswith(PAPER_NO_FIT).all()
    assert "25 photo(s) of big in class 'b', more than fit (test " in big["reason"].iloc[0]
    others = split[left_out & (split["subject"] != "big")]
    assert len(others) == 10 + 40 and others["reason"].str.startswith(PAPER_FULL).all()
    placed = make_split(table, kind="paper", n_train=20, n_test=10)
    assert placed.equals(split[~left_out].drop(columns="reason").reset_index(drop=True))


def test_paper_split_keeps_a_person_with_photos_in_two_classes_on_one_side():
    table = expression_table(n_people=102)  # each person: a neutral and a smiling photo
    split = make_split(table, kind="paper", n_train=40, n_test=30, keep_excluded=True)  # was a LeakError

    placed = split[split["role"] != EXCLUDED]
    assert placed.groupby("subject")["role"].nunique().max() == 1
    counts = placed.assign(fit=placed["role"].replace("val", "train")).groupby(["label", "fit"]).size()
    assert counts.to_dict() == {(c, r): n for c in ("neutral", "smiling") for r, n in (("test", 30), ("train", 40))}


def test_training_people_left_out_by_train_subjects_per_class_say_so():
    labels, subjects = people(n_people=40)
    table = pd.DataFrame({"path": [f"{i}.jpg" for i in range(len(labels))], "subject": subjects, "label": labels})
    table["sha256"] = table["path"]
    split = make_split(table, kind="kfold", n_folds=4, train_subjects_per_class=3, keep_excluded=True)
    left_out = split[split["role"] == EXCLUDED]
    assert len(left_out) > 0 and left_out["reason"].str.startswith("train_subjects_per_class=3").all()
    assert not (make_split(table, kind="kfold", n_folds=4, keep_excluded=True)["role"] == EXCLUDED).any()


def test_large_people_names_a_person_holding_most_of_a_class():
    table = one_large_person()
    large = large_people(table["label"], table["subject"])
    assert large[["label", "subject", "images", "class_images"]].values.tolist() == [["b", "big", 30, 40]]
    assert large_people(*people(n_people=20)).empty


def _folder(root, table: pd.DataFrame) -> None:
    """A `data=folder` tree of tiny distinct PNGs for ``table`` (paths become <label>/<path>.png)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for row in table.itertuples():
        path = root / row.label / f"{row.path}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
        rows.append({"path": str(path), "label": row.label, "subject": row.subject})
    pd.DataFrame(rows).to_csv(root / "subjects.csv", index=False)


def test_prepare_data_warns_of_a_large_person_and_writes_every_usable_row_to_split_csv(tmp_path, capsys):
    from omegaconf import OmegaConf

    from facediag.data.build import prepare_data

    root = tmp_path / "photos"
    _folder(root, one_large_person(n_other_class=80))
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "data" / "folder.yaml")
    cfg.merge_with({"root": str(root), "subjects_csv": str(root / "subjects.csv"), "identity_grouping": "off",
                    "split": "paper", "n_train": 40, "n_test": 30, "val_size": 0})

    data = prepare_data(cfg, tmp_path / "run")

    out = capsys.readouterr().out
    assert "WARNING: person 'big' holds 30 of the 40 images of class 'b' (75%)" in out
    assert "split: 10 image(s) left out" in out  # class 'a': 80 photos for 30 test + 40 training places
    written = pd.read_csv(tmp_path / "run" / "split.csv")
    assert len(written) == 120 and (written["role"] == EXCLUDED).sum() == len(data.excluded) == 10
    assert len(data.split) + len(data.excluded) == 120 and "reason" not in data.split.columns

    cfg.merge_with({"split": "kfold", "n_folds": 2, "max_subjects_per_class": 5})
    prepare_data(cfg, tmp_path / "small")
    written = pd.read_csv(tmp_path / "small" / "split.csv")
    left_out = written[written["role"] == EXCLUDED]
    assert len(written) == 120 and (left_out["reason"] == "data.max_subjects_per_class=5: subject not drawn").all()
    assert written.loc[written["role"] != EXCLUDED].groupby("label")["subject"].nunique().to_dict() == {"a": 5, "b": 5}

    cfg.merge_with({"split": "paper", "max_subjects_per_class": None, "n_train": 20, "n_test": 15})
    with pytest.raises(SplitError, match="class 'b' has no train image"):
        prepare_data(cfg, tmp_path / "refused")


def test_a_person_too_large_for_the_paper_split_is_a_warning_and_full_targets_are_a_count(capsys):
    from facediag.data.build import report_excluded

    split = make_split(one_large_person(n_large=25, n_others=40), kind="paper", n_train=20, n_test=10,
                       keep_excluded=True)
    report_excluded(split[split["role"] == EXCLUDED])

    out = capsys.readouterr().out
    assert "split: 75 image(s) left out (role 'excluded' in split.csv, column reason): 50 paper split targets " \
           "reached, 25 person too large for the paper split" in out
    assert out.count("WARNING") == 1 and "WARNING: left out of the split: person too large" in out


def test_a_kfold_split_with_too_few_people_names_the_classes_and_the_setting():
    from facediag.data.splits import SplitError, kfold_split

    labels, subjects = ["a", "a", "b", "b"], ["p1", "p2", "p3", "p4"]
    with pytest.raises(SplitError, match=r"people per class: a 2, b 2\); set data.n_folds to at most 2"):
        kfold_split(labels, subjects, n_folds=5)
