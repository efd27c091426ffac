"""``skadapt demo``: the whole workflow on data that ships with scikit-learn, with no network.

The story, on scikit-learn's bundled handwritten digits (1797 images, 8x8, 10 classes):

- **source domain**: half of the digits, clean, all labelled. A small CNN is pretrained on them;
  it stands in for "a network pretrained on a large source dataset".
- **target domain**: the other half, as faded, noisy scans (contrast reduced to 40%, Gaussian pixel
  noise of std 0.4). The source network, applied as it is, fails on them. Only a few target images
  are labelled: 5 per class in each cross-validation fold.
- **data preparation**: upsampling to 16x16 (once, for every approach), then
  :class:`~skadapt.preprocessing.ChannelStandardizer` in each approach's Pipeline, fitted on the
  fold's own labelled images.
- **three approaches**, cross-validated on the same folds (5 stratified folds of the target images;
  each trains on 5 labels per class drawn from its training part and tests on its whole test part):
  the staged strategy (new head on the frozen pretrained backbone, then everything unfrozen at a
  lower rate), the same network trained from scratch, and a frozen linear probe (only the new head
  trains).

Measured on 2 CPU cores, ``skadapt demo`` takes about 40 seconds. What it shows (accuracy on the
noisy target digits, mean over the 5 folds; the range over seeds 0 to 3 of the whole run):

================================================  ===========  ==============
approach                                          seed 0       seeds 0-3
================================================  ===========  ==============
source network as it is (no target labels)        0.10         0.10
from scratch                                      0.59         0.50 - 0.59
linear probe (frozen backbone, new head)          0.66         0.62 - 0.67
staged fine-tuning (``unfreeze_at=10``)           0.72         0.69 - 0.74
all layers from the start, ``lr=1e-3``            0.66         0.62 - 0.67
================================================  ===========  ==============

Transfer works here: the pretrained features beat training from scratch on 50 labels, and letting
the backbone adapt after the head has settled adds 5 to 9 points over the frozen probe on every
seed. Fine-tuning every layer from the start (the last row, not part of the demo's run) does no
better than the probe. The gaps are a few standard deviations of the fold scores (0.02 - 0.05):
clear on this task, not a general law.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from torch import nn
from torchvision.transforms import v2

from skadapt.evaluation import EvaluationReport, compare, evaluate
from skadapt.finetune import PretrainedFineTuner
from skadapt.preprocessing import ChannelStandardizer

__all__ = ["DemoSettings", "DigitsCNN", "Domains", "QUICK", "load_domains", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """Everything the demo's numbers depend on; the defaults are the documented run.

    Parameters
    ----------
    image_size : int, default=16
        Side of the upsampled digits.
    contrast, noise : float, default=0.4
        The target domain: pixel values ``x`` in [0, 1] become
        ``contrast * clip(x + noise * N(0, 1), 0, 1) + (1 - contrast) / 2``.
    labels_per_class : int, default=5
        Labelled target images per class in each fold's training part.
    n_splits : int, default=5
        Stratified folds over the target images.
    pretrain_epochs, epochs : int
        Epochs of the source pretraining and of each approach on the target.
    unfreeze_at : int, default=10
        The epoch at which the staged strategy unfreezes the backbone.
    seed : int, default=0
    """

    image_size: int = 16
    contrast: float = 0.4
    noise: float = 0.4
    labels_per_class: int = 5
    n_splits: int = 5
    pretrain_epochs: int = 15
    epochs: int = 30
    unfreeze_at: int = 10
    seed: int = 0


#: A run of a few seconds for tests: the same steps, too short to show anything.
QUICK = DemoSettings(n_splits=2, pretrain_epochs=1, epochs=2, unfreeze_at=1)

STAGED, SCRATCH, PROBE = "staged fine-tuning", "from scratch", "linear probe"


class DigitsCNN(nn.Module):
    """Three convolution blocks (conv, BatchNorm, ReLU, max-pool), global pooling, a linear head.

    Parameters
    ----------
    n_classes : int, default=10
        Outputs of the head ``fc`` (the fine-tuner replaces it to fit the target's classes).

    Examples
    --------
    >>> DigitsCNN()(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 10])
    """

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.block1 = _conv_block(1, 32)
        self.block2 = _conv_block(32, 64)
        self.block3 = _conv_block(64, 128)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.block3(self.block2(self.block1(x)))
        return self.fc(self.pool(features).flatten(1))


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(), nn.MaxPool2d(2))


@dataclass
class Domains:
    """The source and target images, ``(n, 1, size, size)`` float32 in [0, 1], and their labels."""

    X_source: np.ndarray
    y_source: np.ndarray
    X_target: np.ndarray
    y_target: np.ndarray


def load_domains(settings: DemoSettings = DemoSettings()) -> Domains:
    """Split scikit-learn's digits into a clean source half and a faded, noisy target half.

    Examples
    --------
    >>> domains = load_domains()
    >>> domains.X_source.shape, domains.X_target.shape
    ((898, 1, 16, 16), (899, 1, 16, 16))
    """
    digits = load_digits()
    images = torch.from_numpy(digits.images[:, None] / 16.0).float()
    images = nn.functional.interpolate(images, size=settings.image_size, mode="bilinear")
    X = images.clamp(0, 1).numpy()
    source, target = train_test_split(np.arange(len(X)), test_size=0.5, stratify=digits.target,
                                      random_state=settings.seed)
    rng = np.random.default_rng(settings.seed)
    noisy = np.clip(X[target] + settings.noise * rng.standard_normal(X[target].shape), 0, 1)
    faded = settings.contrast * noisy + (1 - settings.contrast) / 2
    return Domains(X_source=X[source], y_source=digits.target[source],
                   X_target=faded.astype(np.float32), y_target=digits.target[target])


def few_label_splits(y: np.ndarray, labels_per_class: int, n_splits: int,
                     seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds whose training parts keep only ``labels_per_class`` samples per class.

    Every test part is a whole fold, so the scores rest on ~1/n_splits of the data, not on the
    few labelled samples.
    """
    rng = np.random.default_rng(seed)
    splits = []
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    for train, test in folds.split(np.zeros(len(y)), y):
        labelled = [rng.choice(train[y[train] == label], labels_per_class, replace=False)
                    for label in np.unique(y)]
        splits.append((np.sort(np.concatenate(labelled)), test))
    return splits


def pretrain(domains: Domains, settings: DemoSettings) -> Pipeline:
    """Train the source network on every labelled source image, with shape augmentation."""
    network = PretrainedFineTuner(
        DigitsCNN, freeze="none", lr=3e-3, max_epochs=settings.pretrain_epochs, batch_size=32,
        # small shifts, rotations and scalings: features that do not hang on exact positions
        augment=v2.RandomAffine(degrees=15, translate=(0.15, 0.15), scale=(0.85, 1.15)),
        validation_fraction=0.1, random_state=settings.seed)
    return make_pipeline(ChannelStandardizer(), network).fit(domains.X_source, domains.y_source)


def approaches(source_network: nn.Module, settings: DemoSettings) -> dict[str, Pipeline]:
    """The three approaches, each a Pipeline of data preparation and a fine-tuner."""
    common = {"max_epochs": settings.epochs, "batch_size": 16, "lr": 1e-2,
              # 5 labels per class leave none to spare for early stopping
              "validation_fraction": None, "patience": None, "random_state": settings.seed}
    return {
        STAGED: make_pipeline(ChannelStandardizer(), PretrainedFineTuner(
            source_network, freeze="backbone", unfreeze_at=settings.unfreeze_at, **common)),
        SCRATCH: make_pipeline(ChannelStandardizer(), PretrainedFineTuner(
            DigitsCNN, freeze="none", **common)),
        PROBE: make_pipeline(ChannelStandardizer(), PretrainedFineTuner(
            source_network, freeze="backbone", **common)),
    }


def run_demo(out: str | Path = "skadapt-demo", *, quick: bool = False,
             log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the demo, write its reports into ``out`` and return the results table.

    Parameters
    ----------
    out : str or path, default="skadapt-demo"
        Directory for ``index.html`` (the comparison, linking to each approach's report),
        ``results.csv``, ``results.md`` and one report folder per approach.
    quick : bool, default=False
        Run :data:`QUICK`'s settings: seconds instead of a minute, numbers that mean nothing.
    log : callable, default=print
        Where progress lines go.

    Returns
    -------
    pandas.DataFrame
        One row per approach: mean and std of accuracy and balanced accuracy over the folds, and
        the mean fit time in seconds.
    """
    settings = QUICK if quick else DemoSettings()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file: pass a directory for the demo's reports.")
    start = time.perf_counter()
    with _single_thread():
        domains = load_domains(settings)
        log(f"[1/3] data: {len(domains.y_source)} clean source digits, {len(domains.y_target)} "
            f"faded, noisy target digits ({settings.image_size}x{settings.image_size})")
        source = pretrain(domains, settings)
        as_is = source.score(domains.X_target, domains.y_target)
        log(f"[2/3] pretrained a CNN on the source digits: accuracy {_valid_acc(source):.2f} on "
            f"held-out source digits, {as_is:.2f} on the target digits as it is")
        splits = few_label_splits(domains.y_target, settings.labels_per_class, settings.n_splits,
                                  settings.seed)
        log(f"[3/3] {settings.n_splits}-fold cross-validation on the target, "
            f"{settings.labels_per_class} labels per class for training in each fold")
        reports = {}
        for name, pipeline in approaches(source[-1].module_, settings).items():
            reports[name] = evaluate(pipeline, domains.X_target, domains.y_target, cv=splits,
                                     data_name=_data_name(domains, settings))
            log(f"      {name}: accuracy {_mean(reports[name], 'accuracy'):.3f}")
    results = _results_table(reports)
    _write(out, results, reports, settings, as_is)
    log(f"\n{_markdown(results)}\n\n{_gaps(results)}\n")
    log(f"Reports written to {out}/ (open {out / 'index.html'}); "
        f"{time.perf_counter() - start:.0f} s in all.")
    return results


@contextmanager
def _single_thread():
    """Run torch on one thread, then restore the caller's setting.

    The demo's convolutions are tiny: measured on 2 busy cores, one thread ran a training step in
    3 ms, two threads in 140 ms (they spend their time synchronizing).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _valid_acc(source: Pipeline) -> float:
    return float(source[-1].history_[-1, "valid_acc"])


def _mean(report: EvaluationReport, metric: str) -> float:
    return float(report.fold_scores[metric].mean())


def _results_table(reports: dict[str, EvaluationReport]) -> pd.DataFrame:
    rows = []
    for name, report in reports.items():
        scores = report.fold_scores
        rows.append({"approach": name,
                     "accuracy": scores["accuracy"].mean(),
                     "accuracy_std": scores["accuracy"].std(ddof=0),
                     "balanced_accuracy": scores["balanced_accuracy"].mean(),
                     "fit_time_s": scores["fit_time"].mean()})
    return pd.DataFrame(rows).set_index("approach")


def _markdown(results: pd.DataFrame) -> str:
    lines = ["| approach | accuracy (mean ± std) | balanced accuracy | fit time per fold |",
             "| --- | --- | --- | --- |"]
    for name, row in results.iterrows():
        lines.append(f"| {name} | {row.accuracy:.3f} ± {row.accuracy_std:.3f} | "
                     f"{row.balanced_accuracy:.3f} | {row.fit_time_s:.1f} s |")
    return "\n".join(lines)


def _gaps(results: pd.DataFrame) -> str:
    """The staged strategy's gains, beside the spread of the fold scores they should exceed."""
    staged = results.loc[STAGED, "accuracy"]
    spread = results["accuracy_std"]
    return (f"Staged fine-tuning scores {staged - results.loc[SCRATCH, 'accuracy']:+.3f} over "
            f"training from scratch and {staged - results.loc[PROBE, 'accuracy']:+.3f} over the "
            f"linear probe; the fold scores' standard deviations are {spread.min():.3f} to "
            f"{spread.max():.3f}.")


def _folder(name: str) -> str:
    return name.replace(" ", "-")


def _data_name(domains: Domains, settings: DemoSettings) -> str:
    size = settings.image_size
    return (f"{len(domains.y_target)} target digits ({size}x{size}, faded to "
            f"{settings.contrast:.0%} contrast, pixel noise of std {settings.noise}), "
            f"{settings.labels_per_class} labels per class for training in each fold")


def _write(out: Path, results: pd.DataFrame, reports: dict[str, EvaluationReport],
           settings: DemoSettings, as_is: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, report in reports.items():
        report.save(out / _folder(name))
    results.to_csv(out / "results.csv")
    (out / "results.md").write_text(_markdown(results) + "\n")
    (out / "index.html").write_text(_index_html(reports, results, settings, as_is))


def _index_html(reports: dict[str, EvaluationReport], results: pd.DataFrame,
                settings: DemoSettings, as_is: float) -> str:
    """The comparison page: the three approaches side by side, linking to each one's report."""
    setup = (f"Source: clean digits, all labelled. Target: the other digits, faded to "
             f"{settings.contrast:.0%} contrast with pixel noise of std {settings.noise}; "
             f"{settings.n_splits}-fold stratified cross-validation, each fold training on "
             f"{settings.labels_per_class} labels per class. The source network as it is scores "
             f"{as_is:.3f} on the target. {_gaps(results)}")
    links = {f"{name}: scores, training curves, confusions, calibration, top losses":
             f"{_folder(name)}/report.html" for name in reports}
    comparison = compare(reports, ["accuracy", "balanced_accuracy", "f1_macro"])
    return comparison.to_html(title="skadapt demo: adapting a pretrained CNN to new digits",
                              intro=setup, links=links)
