"""Find what makes a test score lie: samples, groups or times shared by the training and test parts,
and features that give the label away.

Each check is one small function that returns findings; :func:`leakage_report` runs those that the
inputs allow and gathers their findings in one DataFrame.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import OrdinalEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.multiclass import type_of_target

COLUMNS = ["kind", "detail", "count", "examples"]
_CLASS_TARGETS = ("binary", "multiclass")


class LeakageError(ValueError):
    """Raised by :func:`leakage_report` with ``raise_on_findings=True`` when it finds a leak.

    Attributes
    ----------
    report : pandas.DataFrame
        The findings, as :func:`leakage_report` returns them.
    """

    def __init__(self, report: pd.DataFrame):
        self.report = report
        lines = [f"- {row.kind}: {row.detail}" for row in report.itertuples()]
        super().__init__("The test part leaks from the training part:\n" + "\n".join(lines))


@dataclass
class _Finding:
    kind: str
    detail: str
    count: int
    examples: list[str] = field(default_factory=list)


@dataclass
class _Part:
    """One part's samples, with what the checks need resolved from the caller's arguments."""

    samples: Any  # what is compared: rows without target/groups/order columns, texts or paths
    kind: str  # "rows", "texts", "files" or "images"
    y: Any = None
    groups: Any = None
    order: Any = None
    # the columns a model may use, for the single-feature check
    features: pd.DataFrame | None = None


def leakage_report(
    train: Any,
    test: Any,
    *,
    y: str | tuple | None = None,
    groups: str | tuple | None = None,
    order: str | tuple | None = None,
    extractor: Any = None,
    similarity: float = 0.95,
    feature_score: float = 0.98,
    max_examples: int = 5,
    raise_on_findings: bool = False,
) -> pd.DataFrame:
    """Report what leaks from ``train`` into ``test``: the reasons a test score can lie.

    Checks, each run when its inputs are there:

    - ``exact_duplicate``: a test sample identical to a training sample: the same row, the same
      text, or an image file with the same bytes under another name.
    - ``near_duplicate``: texts equal once case, accents, punctuation and spaces are ignored; with
      ``extractor``, samples whose embeddings have a cosine similarity of at least ``similarity``.
    - ``shared_group``: a group (a patient, a site, a user) with samples in both parts.
    - ``time_overlap``: test samples that are not later than the last training sample.
    - ``predictive_feature``: a single column that predicts ``y`` almost perfectly on its own
      (balanced accuracy, or R² for a continuous target, of at least ``feature_score``): a target
      in disguise, or an identifier of rows sorted by label.

    Parameters
    ----------
    train, test : array-like, DataFrame, or list of texts, file paths or PIL images
        The two parts, of the same kind. Rows are compared on all columns except those named by
        ``y``, ``groups`` and ``order``. A list of strings that all name existing files is
        compared by file content; other strings as texts.
    y, groups, order : str or (train_values, test_values), optional
        The target, group labels and time keys: a column name of both DataFrames, or a pair of
        arrays, one per part. ``y=(y_train, None)`` scores single features by 3-fold
        cross-validation on the training part instead of on the test part.
    extractor : transformer, optional
        Anything with ``fit_transform`` and ``transform`` that turns samples into vectors (skadapt's
        ``PretrainedFeatureExtractor``, a ``TfidfVectorizer``, ``PCA``): finds near duplicates by
        cosine similarity. It is cloned and fitted on ``train`` only.
    similarity : float, default=0.95
        The cosine similarity from which two embeddings count as near duplicates.
    feature_score : float, default=0.98
        The score from which one feature alone counts as predicting the label.
    max_examples : int, default=5
        How many examples each finding lists.
    raise_on_findings : bool, default=False
        Raise :class:`LeakageError` (carrying the report) instead of returning a non-empty report:
        for pipelines and CI.

    Returns
    -------
    pandas.DataFrame
        One row per finding, with columns ``kind``, ``detail`` (what was found, in words), ``count``
        (how many test samples, groups or features) and ``examples`` (a list of short strings, with
        0-based positions in each part). Empty when nothing was found.

    Examples
    --------
    >>> from skadapt.model_selection import leakage_report
    >>> train = ["The food was great!", "Slow service.", "Never again"]
    >>> test = ["the food was GREAT", "Slow service.", "Lovely staff"]
    >>> report = leakage_report(train, test)
    >>> report[["kind", "count"]].to_dict("records")
    [{'kind': 'exact_duplicate', 'count': 1}, {'kind': 'near_duplicate', 'count': 1}]
    """
    _check_options(similarity, feature_score, max_examples)
    train_part, test_part = _parts(train, test, y, groups, order)

    exact = _matched_positions(train_part, test_part, _exact_key)
    findings = _exact_duplicates(exact, train_part, test_part, max_examples)
    already_found = set(exact)  # a sample is reported under its strongest kind of duplicate only
    if train_part.kind == "texts":
        normalized = _matched_positions(train_part, test_part, _normalized_text)
        normalized = {key: value for key, value in normalized.items() if key not in already_found}
        findings += _near_duplicate_texts(normalized, train_part, test_part, max_examples)
        already_found |= set(normalized)
    if extractor is not None:
        findings += _near_duplicate_embeddings(
            train_part, test_part, extractor, similarity, already_found, max_examples
        )
    findings += _shared_groups(train_part.groups, test_part.groups, max_examples)
    findings += _time_overlap(train_part.order, test_part.order)
    findings += _predictive_features(train_part, test_part, feature_score, max_examples)

    report = pd.DataFrame([vars(finding) for finding in findings], columns=COLUMNS)
    report["count"] = report["count"].astype("int64")
    if raise_on_findings and len(report):
        raise LeakageError(report)
    return report


def _check_options(similarity, feature_score, max_examples) -> None:
    for name, value in (("similarity", similarity), ("feature_score", feature_score)):
        if not 0 < value <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {value!r}.")
    if not isinstance(max_examples, int) or max_examples < 0:
        raise ValueError(f"max_examples must be a non-negative integer, got {max_examples!r}.")


# --- resolving the inputs ------------------------------------------------------------------------


def _parts(train, test, y, groups, order) -> tuple[_Part, _Part]:
    kind = _sample_kind(train, "train")
    if _sample_kind(test, "test") != kind:
        raise TypeError(
            f"train holds {kind} but test holds {_sample_kind(test, 'test')}: pass the two parts "
            "of one data set."
        )
    if kind == "rows" and isinstance(train, pd.DataFrame) != isinstance(test, pd.DataFrame):
        raise TypeError("Pass train and test both as DataFrames or both as arrays.")
    resolved = {
        name: _pair(value, name, train, test)
        for name, value in (("y", y), ("groups", groups), ("order", order))
    }
    named_columns = [value for value in (y, groups, order) if isinstance(value, str)]
    parts = []
    for index, samples in enumerate((train, test)):
        rows = samples.drop(columns=named_columns) if named_columns else samples
        features = samples.drop(columns=[y]) if isinstance(y, str) else samples
        if kind == "texts":
            rows = [str(text) for text in samples]
        elif kind != "rows":
            rows = list(samples)  # positions, not a Series' labels, index the examples
        parts.append(
            _Part(
                samples=rows,
                kind=kind,
                y=resolved["y"][index],
                groups=resolved["groups"][index],
                order=resolved["order"][index],
                features=_as_frame(features) if kind == "rows" else None,
            )
        )
    if kind == "rows" and isinstance(train, pd.DataFrame):
        _check_same_columns(parts[0].samples, parts[1].samples)
        # rows hash by position of their values: put test's columns in train's order
        parts[1].samples = parts[1].samples[parts[0].samples.columns]
        parts[1].features = parts[1].features[parts[0].features.columns]
    return parts[0], parts[1]


def _sample_kind(samples, name: str) -> str:
    if isinstance(samples, pd.DataFrame):
        return "rows"
    if isinstance(samples, np.ndarray) and (samples.ndim != 1 or samples.dtype.kind not in "OUS"):
        return "rows"  # numbers; a 1-D array of strings or objects is looked at item by item
    if isinstance(samples, str | bytes) or not hasattr(samples, "__len__"):
        raise TypeError(
            f"{name} must be an array, a DataFrame or a list of samples, got "
            f"{type(samples).__name__}."
        )
    items = list(samples)
    if items and all(isinstance(item, str | PathLike) for item in items):
        # all() stops at the first text that names no file, so texts cost one look-up
        return "files" if all(_is_file(item) for item in items) else "texts"
    if items and all(hasattr(item, "tobytes") and hasattr(item, "mode") for item in items):
        return "images"  # PIL images
    return "rows"


def _is_file(item) -> bool:
    try:
        return Path(item).is_file()
    except (OSError, ValueError):  # a long text or a NUL byte is no file name
        return False


def _pair(value, name: str, train, test) -> tuple[Any, Any]:
    """``value`` as (train_values, test_values): a column of both DataFrames, or a pair."""
    if value is None:
        return None, None
    if isinstance(value, str):
        for part_name, part in (("train", train), ("test", test)):
            if not isinstance(part, pd.DataFrame):
                raise ValueError(
                    f"{name}={value!r} names a column, but {part_name} is not a DataFrame:"
                    f" pass {name}=(train_values, test_values) instead."
                )
            if value not in part.columns:
                raise ValueError(
                    f"{name}={value!r} is not a column of {part_name}; its columns are "
                    f"{list(part.columns)}."
                )
        return train[value].to_numpy(), test[value].to_numpy()
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(
            f"{name} must be a column name or a pair (train_values, test_values), "
            f"got {type(value).__name__}."
        )
    pair = []
    for part_name, part, values in (("train", train, value[0]), ("test", test, value[1])):
        if values is not None and len(values) != len(part):
            raise ValueError(
                f"{name} for {part_name} has {len(values)} values for {len(part)} samples."
            )
        pair.append(None if values is None else np.asarray(values))
    if name != "y" and any(values is None for values in pair):
        raise ValueError(f"{name} needs values for both parts, got None for one of them.")
    if name == "y" and pair[0] is None and pair[1] is not None:
        raise ValueError("y has test values but no training values: pass y=(y_train, y_test).")
    return pair[0], pair[1]


def _as_frame(samples) -> pd.DataFrame | None:
    """Tabular samples as a DataFrame of columns; None for images and other many-axis arrays."""
    if isinstance(samples, pd.DataFrame):
        return samples
    array = np.asarray(samples)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        return None
    return pd.DataFrame(array, columns=[f"column {i}" for i in range(array.shape[1])])


def _check_same_columns(train: pd.DataFrame, test: pd.DataFrame) -> None:
    missing = [c for c in train.columns if c not in test.columns]
    extra = [c for c in test.columns if c not in train.columns]
    if missing or extra:
        raise ValueError(
            f"train and test have different columns: test lacks {missing}, has extra {extra}."
        )


# --- exact and near duplicates -------------------------------------------------------------------


def _exact_key(part: _Part) -> list:
    """One hashable key per sample; equal keys mean identical samples."""
    if part.kind == "texts":
        return part.samples
    if part.kind == "files":
        return [_file_digest(path) for path in part.samples]
    if part.kind == "images":
        return [
            _digest(image.mode.encode(), str(image.size).encode(), image.tobytes())
            for image in part.samples
        ]
    if isinstance(part.samples, pd.DataFrame):
        return pd.util.hash_pandas_object(part.samples, index=False).tolist()
    array = np.ascontiguousarray(part.samples)
    return [_digest(row.tobytes()) for row in array.reshape(len(array), -1)]


def _digest(*chunks: bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for chunk in chunks:
        digest.update(chunk)
    return digest.digest()


def _file_digest(path) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def _normalized_text(part: _Part) -> list[str]:
    return [_normalize(text) for text in part.samples]


def _normalize(text: str) -> str:
    """Lower case, no accents, no punctuation, single spaces: what a copy-edit usually changes."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(char for char in text if not unicodedata.combining(char)).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _matched_positions(train: _Part, test: _Part, key) -> dict[int, int]:
    """{test position: a training position} for test samples whose key a training sample shares."""
    first_train_position = {}
    for position, sample_key in enumerate(key(train)):
        first_train_position.setdefault(sample_key, position)
    return {
        position: first_train_position[sample_key]
        for position, sample_key in enumerate(key(test))
        if sample_key in first_train_position
    }


def _exact_duplicates(matches, train: _Part, test: _Part, max_examples: int) -> list[_Finding]:
    if not matches:
        return []
    what = {
        "texts": "texts",
        "files": "files with the same content",
        "images": "images",
        "rows": "rows",
    }[train.kind]
    detail = (
        f"{len(matches)} of {len(test.samples)} test samples are {what} identical to a "
        "training sample"
    )
    return [
        _Finding(
            "exact_duplicate",
            detail,
            len(matches),
            _pair_examples(matches, train, test, max_examples),
        )
    ]


def _near_duplicate_texts(matches, train, test, max_examples) -> list[_Finding]:
    if not matches:
        return []
    detail = (
        f"{len(matches)} test texts equal a training text once case, accents, punctuation and "
        "spaces are ignored"
    )
    return [
        _Finding(
            "near_duplicate",
            detail,
            len(matches),
            _pair_examples(matches, train, test, max_examples),
        )
    ]


def _near_duplicate_embeddings(train, test, extractor, similarity, already_found, max_examples):
    for method in ("fit_transform", "transform"):
        if not callable(getattr(extractor, method, None)):
            raise TypeError(
                f"extractor must have fit_transform and transform methods; "
                f"{type(extractor).__name__} has no {method}."
            )
    # fitted on train only, and a clone, so that the caller's extractor is left as it was
    extractor = clone(extractor) if hasattr(extractor, "get_params") else extractor
    train_embeddings = extractor.fit_transform(train.samples)
    test_embeddings = extractor.transform(test.samples)
    neighbours = NearestNeighbors(n_neighbors=1, metric="cosine").fit(train_embeddings)
    distances, nearest = neighbours.kneighbors(test_embeddings)
    similarities = 1 - distances[:, 0]
    matches = {
        position: int(nearest[position, 0])
        for position in np.flatnonzero(similarities >= similarity)
        if position not in already_found
    }
    if not matches:
        return []
    detail = (
        f"{len(matches)} test samples have a training sample with embeddings of cosine "
        f"similarity >= {similarity:g} (and are not exact duplicates)"
    )
    examples = [
        f"{text} (cosine {similarities[position]:.3f})"
        for position, text in zip(
            list(matches)[:max_examples], _pair_examples(matches, train, test, max_examples)
        )
    ]
    return [_Finding("near_duplicate", detail, len(matches), examples)]


def _pair_examples(
    matches: dict[int, int], train: _Part, test: _Part, max_examples: int
) -> list[str]:
    examples = []
    for test_position, train_position in list(matches.items())[:max_examples]:
        example = f"train[{train_position}] = test[{test_position}]"
        if train.kind in ("texts", "files"):
            shown = [
                _short(part.samples[position], keep_end=train.kind == "files")
                for part, position in ((train, train_position), (test, test_position))
            ]
            example += f": {shown[0]!r} ~ {shown[1]!r}"
        examples.append(example)
    return examples


def _short(value, width: int = 60, keep_end: bool = False) -> str:
    """At most ``width`` characters; a path keeps its end, where the file name is."""
    text = str(value)
    if len(text) <= width:
        return text
    return "..." + text[3 - width :] if keep_end else text[: width - 3] + "..."


# --- groups and time -----------------------------------------------------------------------------


def _shared_groups(train_groups, test_groups, max_examples) -> list[_Finding]:
    if train_groups is None:
        return []
    shared = pd.Index(pd.unique(train_groups)).intersection(pd.Index(pd.unique(test_groups)))
    if shared.empty:
        return []
    n_test_samples = int(pd.Index(test_groups).isin(shared).sum())
    detail = (
        f"{len(shared)} groups have samples in both parts ({n_test_samples} test samples): "
        "a model can recognise the group instead of learning the task"
    )
    return [
        _Finding(
            "shared_group", detail, len(shared), [repr(group) for group in shared[:max_examples]]
        )
    ]


def _time_overlap(train_order, test_order) -> list[_Finding]:
    if train_order is None or len(train_order) == 0 or len(test_order) == 0:
        return []
    # pandas, for readable time stamps in the detail ("2024-01-01 00:00:00")
    train_order, test_order = pd.Series(train_order), pd.Series(test_order)
    try:
        last_train = train_order.max()
        not_later = int((test_order <= last_train).sum())
    except TypeError as error:
        raise TypeError(f"order values of train and test cannot be compared: {error}.") from error
    if not not_later:
        return []
    detail = (
        f"train spans {train_order.min()} to {last_train}, test spans {test_order.min()} to "
        f"{test_order.max()}: {not_later} test samples are not later than the last training "
        "sample, so the model has seen their future"
    )
    return [_Finding("time_overlap", detail, not_later)]


# --- features that give the label away -----------------------------------------------------------


def _predictive_features(train: _Part, test: _Part, feature_score, max_examples) -> list[_Finding]:
    if train.y is None or train.features is None or test.features is None:
        return []
    target_type = type_of_target(train.y)
    if target_type not in (*_CLASS_TARGETS, "continuous"):
        return []
    classify = target_type in _CLASS_TARGETS
    scores = {}
    for column in train.features.columns:
        score = _single_feature_score(
            train.features[column], test.features[column], train.y, test.y, classify
        )
        if score >= feature_score:
            scores[column] = score
    if not scores:
        return []
    metric = "balanced accuracy" if classify else "R²"
    where = "on the test part" if test.y is not None else "in 3-fold cross-validation on train"
    detail = (
        f"{len(scores)} features each predict the label on their own with {metric} >= "
        f"{feature_score:g} {where}: a target in disguise, or an identifier of sorted rows"
    )
    ranked = sorted(scores.items(), key=lambda item: -item[1])[:max_examples]
    return [
        _Finding(
            "predictive_feature",
            detail,
            len(scores),
            [f"{column!r} ({metric} {score:.3f})" for column, score in ranked],
        )
    ]


def _single_feature_score(train_column, test_column, y_train, y_test, classify: bool) -> float:
    """How well a decision tree on this one column predicts the label (-inf: cannot be said)."""
    encoded = _encode_column(train_column, test_column)
    if encoded is None:
        return -np.inf
    train_values, test_values = encoded
    tree = (DecisionTreeClassifier if classify else DecisionTreeRegressor)(random_state=0)
    with warnings.catch_warnings():
        # tiny classes in cross-validation only lower the score, which is what this check wants
        warnings.simplefilter("ignore", UserWarning)
        if y_test is None:
            scoring = "balanced_accuracy" if classify else "r2"
            scores = cross_val_score(
                tree, train_values, y_train, cv=3, scoring=scoring, error_score=np.nan
            )
            return -np.inf if np.isnan(scores).any() else float(np.mean(scores))
        predictions = tree.fit(train_values, y_train).predict(test_values)
        metric = balanced_accuracy_score if classify else r2_score
        return float(metric(y_test, predictions))


def _encode_column(train_column: pd.Series, test_column: pd.Series):
    """The column as one numeric feature for a tree; None when it has no usable values."""
    if pd.api.types.is_bool_dtype(train_column) or pd.api.types.is_numeric_dtype(train_column):
        values = [
            column.astype("float64").to_numpy().reshape(-1, 1)
            for column in (train_column, test_column)
        ]
    elif pd.api.types.is_datetime64_any_dtype(train_column):
        # seconds since the earliest training time: missing times become NaN, which trees handle
        origin = train_column.min()
        values = [
            (column - origin).dt.total_seconds().to_numpy().reshape(-1, 1)
            for column in (train_column, test_column)
        ]
    else:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        train_text, test_text = (
            column.astype(str).to_frame() for column in (train_column, test_column)
        )
        values = [encoder.fit_transform(train_text), encoder.transform(test_text)]
    if np.isnan(values[0]).all():
        return None
    return values[0], values[1]
