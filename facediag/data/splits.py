"""Leakage-free splits: a person (subject) and an image (sha256) never sit on two sides.

Every function is pure: arrays of labels and subjects in, an array of roles out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from facediag.core.errors import UserError
from facediag.core.status import EXCLUDED

TRAIN, VAL, TEST = "train", "val", "test"
# EXCLUDED (facediag.core.status): split.csv's role of a row left out of the split (column ``reason`` says why)
PAPER_FULL, PAPER_NO_FIT = "paper split targets reached", "person too large for the paper split"
MAX_PERSON_SHARE = 0.2  # one person holding more of a class's images cannot be spread over 5 folds


class LeakError(UserError, ValueError):
    """The same person or the same image bytes appear on two sides of a split, or under two labels."""


class SplitError(UserError, ValueError):
    """The data cannot be split as asked (a class too small for the paper split or for k folds)."""


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def paper_split(
    labels: Sequence[str], subjects: Sequence[str], n_train: int = 40, n_test: int = 30, seed: int = 0
) -> np.ndarray:
    """The paper's fixed per-class split: at most ``n_test`` test and ``n_train`` train images per class.

    Roles only (role '' for a row left out); ``paper_placement`` gives the reasons too.
    """
    return paper_placement(labels, subjects, n_train=n_train, n_test=n_test, seed=seed)[0]


def paper_placement(
    labels: Sequence[str], subjects: Sequence[str], n_train: int = 40, n_test: int = 30, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Roles of the paper split and, for every row left out (role ''), why.

    Subjects are drawn whole, in a seeded order per class; a person counts as many images as they have
    photos, and goes to test if they still fit there, else to train if they fit there, else is left out:
    the targets are never exceeded. A person with photos in several classes (expression) keeps the side
    their first placed class gave them, or is left out of the other class. A class short of
    ``n_train + n_test`` images fills test first and trains on the rest (``short_classes`` says which;
    the caller warns).
    """
    labels, subjects = np.asarray(labels, dtype=object), np.asarray(subjects, dtype=object)
    roles = np.full(len(labels), "", dtype=object)
    reasons = np.full(len(labels), "", dtype=object)
    side: dict[str, str] = {}
    rng = _rng(seed)
    for label in sorted(set(labels)):
        in_class = labels == label
        people = np.array(sorted(set(subjects[in_class])), dtype=object)
        rng.shuffle(people)
        if in_class.sum() < n_test + 1:
            raise SplitError(
                f"class {label!r} has {in_class.sum()} images; the paper split needs more than n_test={n_test} "
                f"(lower data.n_test / data.n_train, or use data.split=kfold)"
            )
        caps = {TEST: n_test, TRAIN: n_train}
        filled = {TEST: 0, TRAIN: 0}
        for person in people:
            rows = in_class & (subjects == person)
            size = int(rows.sum())
            allowed = (side[person],) if person in side else (TEST, TRAIN)
            role = next((r for r in allowed if filled[r] + size <= caps[r]), "")
            roles[rows] = role
            if role:
                filled[role] += size
                side[person] = role
            else:
                reasons[rows] = _paper_reason(person, label, size, allowed, filled, caps)
    return roles, reasons


def _paper_reason(
    person: str, label: str, size: int, allowed: tuple[str, ...], filled: dict[str, int], caps: dict[str, int]
) -> str:
    taken = ", ".join(f"{r} {filled[r]}/{caps[r]}" for r in allowed)
    where = f"their other photos are in {allowed[0]}; " if len(allowed) == 1 else ""
    if all(size > caps[r] for r in allowed):
        return f"{PAPER_NO_FIT}: {where}{size} photo(s) of {person} in class {label!r}, more than fit ({taken})"
    return f"{PAPER_FULL}: {where}no room for {size} photo(s) of class {label!r} ({taken})"


def short_classes(labels: Sequence[str], n_train: int, n_test: int) -> dict[str, int]:
    """Classes with fewer than ``n_train + n_test`` images (the paper split trains on fewer), with counts."""
    counts = pd.Series(np.asarray(labels, dtype=object)).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items()) if v < n_train + n_test}


def kfold_split(
    labels: Sequence[str], subjects: Sequence[str], n_folds: int = 5, fold: int = 0, seed: int = 0
) -> np.ndarray:
    """Stratified k-fold grouped by subject: fold ``fold`` is the test part, the rest is training.

    Repeated k-fold = the same call with another ``seed``.
    """
    if not 0 <= fold < n_folds:
        raise SplitError(f"fold must be in [0, {n_folds}), got {fold}")
    labels, subjects = np.asarray(labels, dtype=object), np.asarray(subjects, dtype=object)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    try:
        _, test_idx = list(splitter.split(np.zeros(len(labels)), labels, subjects))[fold]
    except ValueError as err:  # scikit-learn's words name neither the classes nor the setting to change
        people = pd.Series(subjects).groupby(pd.Series(labels)).nunique()
        counts = ", ".join(f"{label} {n}" for label, n in people.items())
        raise SplitError(f"a {n_folds}-fold split by person is not possible here (people per class: {counts}); "
                         f"set data.n_folds to at most {max(2, int(people.min()))} or add people "
                         f"({err})") from err
    roles = np.full(len(labels), TRAIN, dtype=object)
    roles[test_idx] = TEST
    return roles


def carve_validation(
    roles: np.ndarray, labels: Sequence[str], subjects: Sequence[str], val_size: float = 0.2, seed: int = 0
) -> np.ndarray:
    """Move about ``val_size`` of the training part (whole subjects, stratified) to validation.

    Only rows with role 'train' are touched: the test part is never used for early stopping or selection.
    """
    roles = np.asarray(roles, dtype=object).copy()
    if val_size <= 0:
        return roles
    train_idx = np.flatnonzero(roles == TRAIN)
    labels, subjects = np.asarray(labels, dtype=object), np.asarray(subjects, dtype=object)
    wanted = max(2, int(round(1.0 / val_size)))
    train_labels, train_subjects = labels[train_idx], subjects[train_idx]
    people = {lab: len(set(train_subjects[train_labels == lab])) for lab in set(train_labels)}
    n_splits = min(wanted, min(people.values()))
    if n_splits < 2:
        raise SplitError(f"cannot carve a validation part by person: the training part has {people} people per class")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, val_local = next(splitter.split(np.zeros(len(train_idx)), train_labels, train_subjects))
    roles[train_idx[val_local]] = VAL
    return roles


def subsample_training(
    roles: np.ndarray, labels: Sequence[str], subjects: Sequence[str], per_class: int, seed: int = 0
) -> np.ndarray:
    """Keep ``per_class`` people of every class in the training part; its other rows get role ''.

    Only rows with role 'train' are touched, so the test part stays exactly the same (learning curves:
    accuracy against training people per class on one fixed test fold). People are drawn in a seeded
    order per class and counted per class they have photos in (a person with a neutral and a smiling
    photo counts for both expression classes), so smaller sizes give subsets of larger ones.
    """
    if per_class < 1:
        raise ValueError(f"train_subjects_per_class must be >= 1, got {per_class}")
    roles = np.asarray(roles, dtype=object).copy()
    labels, subjects = np.asarray(labels, dtype=object), np.asarray(subjects, dtype=object)
    train = roles == TRAIN
    rng = _rng(seed)
    keep: set[str] = set()
    for label in sorted(set(labels[train])):
        people = sorted(set(subjects[train & (labels == label)]))
        if len(people) < per_class:
            raise ValueError(
                f"class {label!r} has {len(people)} people in the training part, fewer than "
                f"train_subjects_per_class={per_class}"
            )
        for person in rng.permutation(np.array(people, dtype=object)):
            if len(keep.intersection(people)) >= per_class:
                break
            keep.add(person)
    roles[train & ~np.isin(subjects, list(keep))] = ""
    return roles


def check_no_leak(
    table: pd.DataFrame, role_column: str = "role", near_duplicates: Sequence[tuple[str, str, float]] = ()
) -> None:
    """Refuse a split where a subject or identical image bytes cross sides, or one image has two labels.

    ``table`` needs `path, label, subject, sha256` and the role column; ``near_duplicates`` lists
    (path, path, descriptor distance) of copies of one photo (re-encoded, resized, cropped), refused
    on two sides or under two labels like identical bytes. The error names the files.
    """
    problems: list[str] = []
    placed = table[table[role_column].isin([TRAIN, VAL, TEST])]
    for key, what in (("subject", "subject"), ("sha256", "identical image bytes")):
        sides = placed.groupby(key)[role_column].nunique()
        for value in sides[sides > 1].index:
            rows = placed[placed[key] == value]
            listing = ", ".join(f"{p} ({r})" for p, r in zip(rows["path"], rows[role_column], strict=True))
            problems.append(f"{what} {value} on several sides: {listing}")
    labelled = table[table["label"].notna() & table["sha256"].notna()]
    labels_per_image = labelled.groupby("sha256")["label"].nunique()
    for digest in labels_per_image[labels_per_image > 1].index:
        rows = labelled[labelled["sha256"] == digest]
        listing = ", ".join(f"{p} ({lab})" for p, lab in zip(rows["path"], rows["label"], strict=True))
        problems.append(f"identical image bytes under several labels: {listing}")
    problems += _near_duplicate_problems(table, role_column, near_duplicates)
    if problems:
        raise LeakError("split refused, it would leak:\n  " + "\n  ".join(problems))


def _near_duplicate_problems(
    table: pd.DataFrame, role_column: str, pairs: Sequence[tuple[str, str, float]]
) -> list[str]:
    rows = table.set_index("path")
    problems = []
    for path_a, path_b, distance in pairs:
        if path_a not in rows.index or path_b not in rows.index:
            continue
        a, b = rows.loc[path_a], rows.loc[path_b]
        sides = {a[role_column], b[role_column]}
        if len(sides) > 1 and sides <= {TRAIN, VAL, TEST}:
            problems.append(
                f"near-duplicate photos (descriptor distance {distance:.3f}) on several sides: "
                f"{path_a} ({a[role_column]}), {path_b} ({b[role_column]})"
            )
        if pd.notna(a["label"]) and pd.notna(b["label"]) and a["label"] != b["label"]:
            problems.append(
                f"near-duplicate photos (descriptor distance {distance:.3f}) under several labels: "
                f"{path_a} ({a['label']}), {path_b} ({b['label']})"
            )
    return problems


def make_split(
    table: pd.DataFrame,
    kind: str = "kfold",
    n_folds: int = 5,
    fold: int = 0,
    split_seed: int = 0,
    val_size: float = 0.2,
    n_train: int = 40,
    n_test: int = 30,
    near_duplicates: Sequence[tuple[str, str, float]] = (),
    train_subjects_per_class: int | None = None,
    keep_excluded: bool = False,
) -> pd.DataFrame:
    """`path,subject,label,role,fold,sha256[,subject_source]` for the usable rows of a manifest, checked for
    leaks (``near_duplicates``: see ``check_no_leak``).

    ``train_subjects_per_class`` keeps that many people per class in the training part only (before the
    validation part is carved from it); the test part is the one the full split has. ``keep_excluded``:
    every row of ``table``, those left out with role ``excluded`` and, in a last column ``reason``, why.
    A split that leaves a class without training or test images is refused (``SplitError``, naming the
    class's largest people).
    """
    labels, subjects = table["label"].to_numpy(), table["subject"].to_numpy()
    reasons = np.full(len(table), "", dtype=object)
    if kind == "paper":
        roles, reasons = paper_placement(labels, subjects, n_train=n_train, n_test=n_test, seed=split_seed)
        fold = -1
    elif kind == "kfold":
        roles = kfold_split(labels, subjects, n_folds=n_folds, fold=fold, seed=split_seed)
    else:
        raise SplitError(f"data.split must be 'paper' or 'kfold', got {kind!r}")
    if train_subjects_per_class:
        kept = subsample_training(roles, labels, subjects, int(train_subjects_per_class), seed=split_seed)
        reasons[(kept == "") & (roles != "")] = (
            f"train_subjects_per_class={int(train_subjects_per_class)}: not among the training people drawn")
        roles = kept
    roles = carve_validation(roles, labels, subjects, val_size=val_size, seed=split_seed)
    check_every_class_placed(labels, subjects, roles)
    split = table.assign(role=roles, fold=fold)
    check_no_leak(split, near_duplicates=near_duplicates)
    columns = ["path", "subject", "label", "role", "fold", "sha256"]
    columns += ["subject_source"] if "subject_source" in split.columns else []
    if keep_excluded:
        split = split.assign(role=np.where(roles == "", EXCLUDED, roles), reason=reasons)
        return split[[*columns, "reason"]].reset_index(drop=True)
    return split.loc[split["role"] != "", columns].reset_index(drop=True)


def check_every_class_placed(labels: Sequence[str], subjects: Sequence[str], roles: Sequence[str]) -> None:
    """Refuse a split that leaves a class without a training or a test image, naming its largest people."""
    frame = pd.DataFrame({"label": labels, "subject": subjects, "role": roles})
    problems = []
    for label, rows in frame.groupby("label", sort=True):
        missing = [r for r in (TRAIN, TEST) if not (rows["role"] == r).any()]
        if not missing:
            continue
        counts = rows["role"].replace("", "left out").value_counts().to_dict()
        largest = rows["subject"].value_counts().head(3)
        people = ", ".join(f"{person} {n}" for person, n in largest.items())
        problems.append(f"class {label!r} has no {' and no '.join(missing)} image ({counts}; "
                        f"{len(rows)} images, largest people: {people})")
    if problems:
        raise SplitError("split refused:\n  " + "\n  ".join(problems) + "\nA person's photos stay on one side: "
                         "one person holding most of a class cannot be split (check identity.csv when the "
                         "subjects came from identity grouping), or use data.split=kfold / larger n_train, n_test.")


def large_people(labels: Sequence[str], subjects: Sequence[str], max_share: float = MAX_PERSON_SHARE) -> pd.DataFrame:
    """People holding more than ``max_share`` of a class's images (`label, subject, images, class_images,
    share`), largest share first: such a person decides that class's folds and weighs on its metrics."""
    frame = pd.DataFrame({"label": np.asarray(labels, dtype=object), "subject": np.asarray(subjects, dtype=object)})
    counts = frame.groupby(["label", "subject"]).size().rename("images").reset_index()
    counts["class_images"] = counts.groupby("label")["images"].transform("sum")
    counts["share"] = counts["images"] / counts["class_images"]
    large = counts[(counts["share"] > max_share) & (counts["images"] > 1)]
    return large.sort_values("share", ascending=False).reset_index(drop=True)
