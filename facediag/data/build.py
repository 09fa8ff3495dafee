"""From the `data` config to a manifest and a checked split, written to the run dir."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from facediag.core.errors import DataNotFoundError, UserError
from facediag.core.status import EXCLUDED, OK, USED
from facediag.data.records import build_manifest, usable
from facediag.data.splits import PAPER_NO_FIT, large_people, make_split, short_classes

IDENTITY_GROUPING = ("auto", "off")

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """A dataset source with its manifest (every file found) and split (usable rows with roles)."""

    source: Any
    manifest: pd.DataFrame
    split: pd.DataFrame
    identity: Any = None  # facediag.data.identity.IdentityReport when identity grouping ran
    excluded: pd.DataFrame | None = None  # usable rows left out of the split, with their ``reason``

    @property
    def classes(self) -> list[str]:
        return list(self.source.classes)

    @property
    def positive(self) -> str | None:
        return self.source.positive


def split_kwargs(data_cfg: DictConfig) -> dict[str, Any]:
    """The split options of a `data` config."""
    keys = ("n_folds", "fold", "split_seed", "val_size", "n_train", "n_test")
    return {
        "kind": data_cfg.split,
        **{k: data_cfg[k] for k in keys},
        "train_subjects_per_class": data_cfg.get("train_subjects_per_class"),
    }


def count_table(manifest: pd.DataFrame, split: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Every file of the manifest once: the files used per class (rows) and role (train / val / test), then
    the files left out per status (no_face, error, ...; :mod:`facediag.core.status`), with totals. A row
    "(no class)" holds the files without a label (other folders, hidden files)."""
    role = manifest["path"].map(split.set_index("path")["role"]).astype(object)
    used = manifest["status"].isin(USED)
    column = role.where(used & role.notna(), manifest["status"].where(~used, "not in the split"))
    label = manifest["label"].where(manifest["label"].isin(classes), "(no class)")
    rows = classes + (["(no class)"] if (label == "(no class)").any() else [])
    table = pd.crosstab(pd.Categorical(label, categories=rows), column, dropna=False)
    order = [c for c in ("train", "val", "test") if c in table.columns]
    table = table[order + sorted(c for c in table.columns if c not in order)]
    table.loc["total"] = table.sum()
    table["total"] = table.sum(axis=1)
    table.index.name, table.columns.name = "class", None
    return table


def subjects_drawn(table: pd.DataFrame, per_class: int, seed: int) -> np.ndarray:
    """Whether each row's subject is among ``per_class`` subjects drawn per class (seeded;
    ``data.max_subjects_per_class``: quick checks and tests on a tiny subset)."""
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for _, rows in table.groupby("label"):
        subjects = sorted(set(rows["subject"]) - keep)
        keep.update(rng.permutation(subjects)[:per_class])
    return table["subject"].isin(keep).to_numpy()


def check_classes_present(table: pd.DataFrame, classes: list[str], manifest: pd.DataFrame, notes: list[str]) -> None:
    """Every class of the task needs a usable image; the error says how many files it had, why none is usable
    and how to leave the class out (``notes``: the source's notes on its folders)."""
    empty = [c for c in classes if not (table["label"] == c).any()]
    if empty:
        details = []
        for c in empty:
            rows = manifest[manifest["label"] == c]
            reasons = (rows["status"] + ": " + rows["reason"].fillna("")).value_counts().to_dict()
            found = f"{len(rows)} files found, none usable {reasons}" if len(rows) else "no file"
            details.append(f"{c}: {found}" + "".join(f" ({n})" for n in notes if f"(class {c})" in n))
        others = [c for c in classes if c not in empty]
        raise DataNotFoundError(
            "class(es) without a usable image: " + "; ".join(details) + ". Add usable images, or leave the "
            f"class out: data.exclude=[{','.join(empty)}] or data.classes=[{','.join(others)}]; "
            "manifest.csv lists every file with its status"
        )


def warn_short_classes(table: pd.DataFrame, data_cfg: DictConfig) -> None:
    """The paper split on a class with fewer than n_train + n_test images: say so, with counts and the way out."""
    if data_cfg.split != "paper":
        return
    short = short_classes(table["label"], int(data_cfg.n_train), int(data_cfg.n_test))
    if short:
        message = (
            f"paper split: class(es) with fewer than n_train + n_test = {data_cfg.n_train} + {data_cfg.n_test} "
            f"images: {short}; the test part is filled first ({data_cfg.n_test} per class) and training gets the "
            f"rest. Consider data.split=kfold."
        )
        log.warning(message)
        print(f"WARNING: {message}")


def warn_large_people(table: pd.DataFrame) -> None:
    """Say which people hold more than MAX_PERSON_SHARE of a class's images (often a merged identity group)."""
    large = large_people(table["label"], table["subject"])
    for row in large.itertuples():
        message = (
            f"person {row.subject!r} holds {row.images} of the {row.class_images} images of class {row.label!r} "
            f"({row.share:.0%}): their photos stay on one side of every split, so that class's training or test "
            f"part rests on one person (identity grouping can merge different people: see identity.csv)"
        )
        log.warning(message)
        print(f"WARNING: {message}")


def report_excluded(excluded: pd.DataFrame) -> None:
    """One line on the rows left out of the split (listed in split.csv); a warning for people that did not fit."""
    if excluded.empty:
        return
    kinds = excluded["reason"].str.split(":").str[0].value_counts()
    print(f"split: {len(excluded)} image(s) left out (role {EXCLUDED!r} in split.csv, column reason): "
          + ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
    misfits = excluded[excluded["reason"].str.startswith(PAPER_NO_FIT)]
    for reason in misfits["reason"].drop_duplicates():
        message = f"left out of the split: {reason}"
        log.warning(message)
        print(f"WARNING: {message}")


def apply_identity_grouping(
    table: pd.DataFrame, data_cfg: DictConfig, preprocess_cfg: DictConfig | None, cache_dir: str | Path | None
) -> tuple[pd.DataFrame, Any]:
    """``data.identity_grouping=auto``: subjects for images nobody named, from their face identity."""
    mode = str(data_cfg.get("identity_grouping") or "off")
    if mode not in IDENTITY_GROUPING:
        raise UserError(f"data.identity_grouping must be one of {IDENTITY_GROUPING}, got {mode!r}")
    if mode == "off" or preprocess_cfg is None or cache_dir is None or table.empty:
        return table, None
    from facediag.data.identity import face_descriptors, group_by_identity

    preprocessor = instantiate(preprocess_cfg)
    found = face_descriptors(table, preprocessor, preprocess_cfg, cache_dir)
    report = group_by_identity(table, found)
    table = table.assign(
        subject=report.groups["subject"].to_numpy(), subject_source=report.groups["subject_source"].to_numpy()
    )
    print(report.summary())
    return table, report


def update_manifest_subjects(manifest: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The manifest with the subjects identity grouping gave (rows not in ``table`` unchanged)."""
    new = table.set_index("path")
    hit = manifest["path"].isin(new.index)
    manifest = manifest.copy()
    for column in ("subject", "subject_source"):
        manifest.loc[hit, column] = manifest.loc[hit, "path"].map(new[column])
    return manifest


def prepare_data(
    data_cfg: DictConfig,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    preprocess_cfg: DictConfig | None = None,
) -> PreparedData:
    """Instantiate the source, build the manifest and the split; write manifest.csv and split.csv.

    split.csv has a row for every usable image: its role, or role ``excluded`` with the ``reason`` it was
    left out (``PreparedData.split`` holds the placed rows, ``PreparedData.excluded`` the others).

    With ``preprocess_cfg`` and ``data.identity_grouping=auto``, images without a known subject are
    grouped by face identity (``identity.csv`` lists the groups) and near-duplicate photos are refused
    on two sides of the split or under two labels.
    """
    source = instantiate(data_cfg.source, _convert_="all")
    manifest = build_manifest(source.records(), cache_dir=cache_dir)
    if out_dir is not None:  # also when the data is refused below: every file with its status and reason
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        manifest.to_csv(Path(out_dir) / "manifest.csv", index=False)
    notes = list(getattr(source, "notes", []))
    for note in notes:
        log.warning("%s", note)
    for _, row in manifest[~manifest["status"].isin([OK, EXCLUDED])].iterrows():
        log.warning("not used: %s (%s: %s)", row["path"], row["status"], row["reason"])
    if (n_excluded := int((manifest["status"] == EXCLUDED).sum())) > 0:
        log.info("%d file(s) excluded (hidden, or of no class of the task): manifest.csv names each", n_excluded)
    table = usable(manifest)
    check_classes_present(table, list(source.classes), manifest, notes)
    table, identity = apply_identity_grouping(table, data_cfg, preprocess_cfg, cache_dir)
    if identity is not None:
        manifest = update_manifest_subjects(manifest, table)
    not_drawn = table.iloc[:0]
    if data_cfg.get("max_subjects_per_class"):
        per_class = int(data_cfg.max_subjects_per_class)
        drawn = subjects_drawn(table, per_class, int(data_cfg.split_seed))
        not_drawn = table[~drawn].assign(reason=f"data.max_subjects_per_class={per_class}: subject not drawn")
        table = table[drawn].reset_index(drop=True)
    warn_short_classes(table, data_cfg)
    warn_large_people(table)
    near = identity.near_duplicates if identity is not None else ()
    every_row = make_split(table, **split_kwargs(data_cfg), near_duplicates=near, keep_excluded=True)
    if len(not_drawn):
        not_drawn = not_drawn.assign(role=EXCLUDED, fold=every_row["fold"].iloc[0])[every_row.columns]
        every_row = pd.concat([every_row, not_drawn], ignore_index=True)
    placed = every_row["role"] != EXCLUDED
    split = every_row[placed].drop(columns="reason").reset_index(drop=True)
    excluded = every_row[~placed].reset_index(drop=True)
    report_excluded(excluded)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest.to_csv(out_dir / "manifest.csv", index=False)
        every_row.to_csv(out_dir / "split.csv", index=False)
        if identity is not None:
            identity.groups.to_csv(out_dir / "identity.csv", index=False)
    return PreparedData(source, manifest, split, identity, excluded)


def with_face_status(manifest: pd.DataFrame, report: pd.DataFrame) -> pd.DataFrame:
    """The manifest with preprocessing's status and reason (no_face, center_crop, error) of the files it
    did not find a usable face in (``report``: preprocess_report.csv), so both tables agree on every file."""
    flagged = report[report["status"] != OK].set_index("path")
    hit = manifest["path"].isin(flagged.index)
    manifest = manifest.copy()
    for column in ("status", "reason"):
        manifest.loc[hit, column] = manifest.loc[hit, "path"].map(flagged[column]).fillna("")
    return manifest
