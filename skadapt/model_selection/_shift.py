"""How far is the target domain from the source? A domain classifier, a kernel distance, and where
in the backbone the shift appears.

The measure
-----------
A logistic regression (on standardized features) is told to separate source samples from target
samples; its cross-validated ROC AUC (``StratifiedKFold``, shuffled) says how different the two
domains look: 0.5 when it cannot tell them apart, 1.0 when it always can. AUC is indifferent to the
ratio of source to target samples, so domains of different sizes compare fairly.

The distance is the squared maximum mean discrepancy (MMD², Gretton et al., JMLR 2012) with an RBF
kernel ``exp(-||a - b||² / median)``, where ``median`` is the median squared distance between all
pooled samples (the median heuristic): the unbiased estimate, so about 0 (it can dip just below)
for one distribution and at most 2. It is computed on at most ``_MMD_MAX_SAMPLES`` samples per
domain, drawn at random, to bound its quadratic cost.

An ``extractor`` is fitted on source and target together (it never sees which is which): fitted on
the source alone, a TF-IDF vocabulary or a PCA would drop what only the target has, and hide the
very shift being measured.

The depth profile
-----------------
:func:`shift_profile` runs the backbone once over both domains, hooks the last module of each
layer group (``resolve_network``'s groups, input side first), pools each output to one vector per
sample (``skadapt.networks._embedding``, as the feature extractor does), and measures each
group's vectors as above. Pooling: the mean over spatial positions for ``(n, channels, height,
width)`` maps (Swin's channels-last maps over theirs), over the sequence for ``(n, tokens,
features)`` outputs (text models: over the real tokens only, padding masked out).
The advice counts domains as alike below an AUC of 0.6, or of 0.5 plus three standard errors of
the AUC under no shift when the domains are small (0.67 for 50 samples each), so that noise raises
no alarm. Where the AUC first rises suggests which groups to fine-tune (Lee et al., ICLR 2023, "Surgical
Fine-Tuning Improves Adaptation to Distribution Shifts"): a shift already visible near the input
favours tuning the early groups, one that appears only near the head the last ones.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array
from torch.utils.data import DataLoader

from skadapt.finetune._adapters import Inputs, adapt_for
from skadapt.finetune._datasets import InputDataset
from skadapt.finetune._device import resolve_device, seeded
from skadapt.finetune._transforms import make_transform
from skadapt.networks import ResolvedNetwork, check_array_input, resolve_network
from skadapt.networks._embedding import embed_layers, to_device

PROFILE_COLUMNS = ["group", "auc", "auc_std", "mmd2"]
_MMD_MAX_SAMPLES = 1000
# AUC bands of the advice: below ALIKE the domains look alike (below chance's reach on small
# domains, see _alike_below), from CLEARLY on they are far apart.
_ALIKE, _CLEARLY = 0.6, 0.8
# A group is where the shift "appears" once its AUC reaches this share of the profile's peak
# excess over chance (0.5): robust to a profile that keeps creeping up after a clear onset.
_ONSET_SHARE = 0.75


@dataclass
class DomainShiftResult:
    """How different a target domain looks from the source, with advice on fine-tuning depth.

    Parameters
    ----------
    auc : float
        Mean cross-validated ROC AUC of a classifier separating source from target samples:
        about 0.5 when the domains look alike, 1.0 when they are told apart every time.
    auc_std : float
        Its standard deviation over the folds.
    mmd2 : float
        Unbiased squared maximum mean discrepancy (RBF kernel, median heuristic): about 0 for one
        distribution, at most 2.
    advice : str
        A starting point for fine-tuning, stated as such.
    n_source, n_target : int
        Samples in each domain.
    depth_profile : pandas.DataFrame or None
        One row per layer group, input side first (``group``, ``auc``, ``auc_std``, ``mmd2``),
        when the shift was measured by depth.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> result = domain_shift(rng.normal(size=(100, 5)), rng.normal(1.0, 1.0, size=(100, 5)),
    ...                       random_state=0)
    >>> result.auc > 0.9
    True
    >>> list(result.to_frame().columns)
    ['auc', 'auc_std', 'mmd2', 'n_source', 'n_target']
    """

    auc: float
    auc_std: float
    mmd2: float
    advice: str
    n_source: int
    n_target: int
    depth_profile: pd.DataFrame | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row with the measures: ``pd.concat`` of several targets' frames compares them."""
        return pd.DataFrame([{"auc": self.auc, "auc_std": self.auc_std, "mmd2": self.mmd2,
                              "n_source": self.n_source, "n_target": self.n_target}])

    def __repr__(self) -> str:
        lines = [f"DomainShiftResult(auc={self.auc:.3f} ± {self.auc_std:.3f}, "
                 f"mmd2={self.mmd2:.4f}, n_source={self.n_source}, n_target={self.n_target})",
                 f"advice: {self.advice}"]
        if self.depth_profile is not None:
            lines += ["depth profile:", self.depth_profile.round(3).to_string(index=False)]
        return "\n".join(lines)


def domain_shift(X_source, X_target, *, extractor=None, by_depth: Mapping | None = None,
                 cv=5, random_state: int | None = None) -> DomainShiftResult:
    """Measure how different ``X_target`` is from ``X_source``, and advise how deep to fine-tune.

    Parameters
    ----------
    X_source, X_target : array-like, sparse matrix, DataFrame, or what ``extractor`` takes
        The samples of each domain: features as they are when ``extractor`` is None (images as
        ``(n, c, h, w)`` arrays are flattened), else anything ``extractor`` accepts (texts, paths).
    extractor : object with ``fit_transform`` and ``transform``, optional
        Turns samples into features (embeddings): skadapt's ``PretrainedFeatureExtractor``, a
        ``TfidfVectorizer``, a Pipeline. Fitted on both domains together (it is not told which is
        which); sklearn estimators are cloned first, other objects are used as they are.
    by_depth : dict, optional
        Keyword arguments of :func:`shift_profile` (``model`` required; ``weights``,
        ``image_size``, ...): also measure the shift at each layer group of that backbone. Without
        an ``extractor``, the overall measure is then that of the last group (the features the
        new head would see), so texts and image paths need no other extractor.
    cv : int or cross-validation splitter, default=5
        Folds of the domain classifier: an int means a shuffled ``StratifiedKFold``.
    random_state : int, optional
        Seeds the folds and the MMD subsample.

    Returns
    -------
    DomainShiftResult

    Examples
    --------
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> phones = ["battery lasts long", "screen is sharp", "the charger broke"] * 10
    >>> films = ["the plot drags", "great acting", "the ending was sad"] * 10
    >>> domain_shift(phones, films, extractor=TfidfVectorizer(), cv=3, random_state=0).auc
    1.0
    """
    if by_depth is not None and not (isinstance(by_depth, Mapping) and "model" in by_depth):
        raise ValueError(f"by_depth={by_depth!r}: pass a dict of shift_profile's arguments with "
                         "at least 'model', e.g. by_depth=dict(model='resnet18', "
                         "weights='DEFAULT').")
    profile, last_features = None, None
    if by_depth is not None:
        features = _group_features(X_source, X_target, **by_depth)
        profile = _profile_frame(features, cv, random_state)
        last_features = list(features.values())[-1] if features else None
    if extractor is not None:
        source, target = _extract(extractor, X_source, X_target)
    elif last_features is not None:
        source, target = last_features
    else:
        source = _as_features(X_source, "X_source")
        target = _as_features(X_target, "X_target")
    _check_same_width(source, target)
    auc, auc_std = _domain_auc(source, target, cv, random_state)
    advice = _advice(auc, auc_std, _alike_below(source.shape[0], target.shape[0]))
    if profile is not None:
        advice += " " + profile.attrs["advice"]
    return DomainShiftResult(auc=auc, auc_std=auc_std, mmd2=_mmd2(source, target, random_state),
                             advice=advice, n_source=source.shape[0], n_target=target.shape[0],
                             depth_profile=profile)


def shift_profile(X_source, X_target, *, model, weights=None, head: str | None = None,
                  image_size: int | None = None, mean=None, std=None,
                  path_column: str | None = None, max_length: int = 128, batch_size: int = 64,
                  cv=5, random_state: int | None = None, device: str = "auto") -> pd.DataFrame:
    """Measure the domain shift at each layer group of a backbone, input side first.

    Parameters
    ----------
    X_source, X_target : images or texts
        What the network takes, as for ``PretrainedFineTuner``: image arrays, image paths, PIL
        images, a DataFrame with ``path_column``, or texts for a Hugging Face text model.
    model, weights, head
        The backbone, as for ``PretrainedFineTuner`` (its new head is never run for the measure).
    image_size, mean, std, path_column
        Image preprocessing, as for ``PretrainedFineTuner`` (no augmentation).
    max_length : int, default=128
        Text models: tokens per text.
    batch_size : int, default=64
        Samples per forward pass.
    cv : int or cross-validation splitter, default=5
        Folds of each group's domain classifier.
    random_state : int, optional
        Seeds the folds, the MMD subsample and random initial weights (``weights=None``).
    device : str, default="auto"
        Where the network runs: a GPU when there is one, else the CPU.

    Returns
    -------
    pandas.DataFrame
        One row per layer group: ``group``, ``auc``, ``auc_std``, ``mmd2`` (NaN for a group the
        forward pass never runs). ``.attrs["advice"]`` holds a sentence on which groups to
        unfreeze: a heuristic after Lee et al., ICLR 2023, not a rule.

    Examples
    --------
    >>> import numpy as np, torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
    ...                           torch.nn.Conv2d(4, 4, 3), torch.nn.Flatten(),
    ...                           torch.nn.Linear(4 * 4 * 4, 2))
    >>> rng = np.random.default_rng(0)
    >>> source = rng.normal(size=(60, 3, 8, 8)).astype("float32")
    >>> profile = shift_profile(source, source + 0.5, model=net, cv=3, random_state=0)
    >>> profile.group.tolist(), bool(profile.auc.iloc[0] > 0.9)
    (['0', '2'], True)
    """
    features = _group_features(X_source, X_target, model=model, weights=weights, head=head,
                               image_size=image_size, mean=mean, std=std, path_column=path_column,
                               max_length=max_length, batch_size=batch_size,
                               random_state=random_state, device=device)
    return _profile_frame(features, cv, random_state)


# --------------------------------------------------------------------------- features
def _extract(extractor, X_source, X_target) -> tuple:
    if not (hasattr(extractor, "fit_transform") and hasattr(extractor, "transform")):
        raise TypeError(f"extractor is a {type(extractor).__name__} without fit_transform and "
                        "transform: pass a transformer such as PretrainedFeatureExtractor, "
                        "TfidfVectorizer or a Pipeline ending in one.")
    if hasattr(extractor, "get_params"):
        extractor = clone(extractor)
    n_source = _n_samples(X_source, "X_source")
    _n_samples(X_target, "X_target")
    features = extractor.fit_transform(_concat(X_source, X_target))
    features = _as_features(features, "the extractor's output")
    return features[:n_source], features[n_source:]


def _n_samples(X, name: str) -> int:
    shape = getattr(X, "shape", None)
    n = shape[0] if shape is not None and len(shape) > 0 else len(X) if hasattr(X, "__len__") \
        else None
    if n is None:
        raise TypeError(f"{name} is a {type(X).__name__}: pass a sequence of samples.")
    return int(n)


def _concat(a, b):
    """Both domains in one container of the type they came in, so that any extractor takes it."""
    if isinstance(a, (pd.DataFrame, pd.Series)) and isinstance(b, (pd.DataFrame, pd.Series)):
        return pd.concat([a, b], ignore_index=True)
    if sparse.issparse(a) and sparse.issparse(b):
        return sparse.vstack([a, b], format="csr")
    if isinstance(a, (np.ndarray, torch.Tensor)) and isinstance(b, (np.ndarray, torch.Tensor)):
        a, b = (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x for x in (a, b))
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"X_source has samples of shape {a.shape[1:]} and X_target of shape "
                             f"{b.shape[1:]}: pass samples of one shape.")
        return np.concatenate([a, b])
    return list(a) + list(b)


def _as_features(X, name: str):
    """A 2-D float array (or CSR matrix) of features, one row per sample."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if not sparse.issparse(X) and not isinstance(X, pd.DataFrame):
        X = np.asarray(X)
        if X.dtype.kind in "OUS" or X.ndim < 2:
            raise TypeError(f"{name} holds {'texts, paths or objects' if X.ndim else 'one value'} "
                            f"(dtype {X.dtype}, shape {X.shape}), not numeric features: pass "
                            "extractor=... (e.g. PretrainedFeatureExtractor, TfidfVectorizer) or "
                            "by_depth=dict(model=...) to embed them first.")
        X = X.reshape(len(X), -1)  # images (n, c, h, w): one vector per image
    try:
        return check_array(X, accept_sparse="csr", dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def _check_same_width(source, target) -> None:
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"X_source has {source.shape[1]} features and X_target "
                         f"{target.shape[1]}: both domains must have the same features.")


# --------------------------------------------------------------------------- measures
def _domain_auc(source, target, cv, random_state) -> tuple[float, float]:
    X = sparse.vstack([source, target], format="csr") if sparse.issparse(source) \
        else np.vstack([source, target])
    y = np.r_[np.zeros(source.shape[0], dtype=int), np.ones(target.shape[0], dtype=int)]
    splitter = _splitter(cv, random_state, min(source.shape[0], target.shape[0]))
    classifier = make_pipeline(StandardScaler(with_mean=not sparse.issparse(X)),
                               LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        # an unconverged fit still ranks samples; its AUC stands
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(classifier, X, y, cv=splitter, scoring="roc_auc")
    return float(np.mean(scores)), float(np.std(scores))


def _splitter(cv, random_state, smallest: int):
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"cv={cv}: pass an int >= 2 (folds of the domain classifier).")
        if smallest < cv:
            raise ValueError(f"one domain has {smallest} sample(s), fewer than cv={cv} folds: "
                             f"pass more samples or cv <= {max(smallest, 2)}.")
        return StratifiedKFold(cv, shuffle=True, random_state=random_state)
    if hasattr(cv, "split"):
        return cv
    raise ValueError(f"cv={cv!r}: pass an int >= 2 or a cross-validation splitter.")


def _mmd2(source, target, random_state) -> float:
    """Unbiased MMD² with an RBF kernel whose bandwidth is the median squared distance."""
    rng = np.random.default_rng(random_state)
    source, target = (_subsample(part, rng) for part in (source, target))
    m, n = source.shape[0], target.shape[0]
    if min(m, n) < 2:
        return float("nan")
    pooled = sparse.vstack([source, target], format="csr") if sparse.issparse(source) \
        else np.vstack([source, target])
    squared = euclidean_distances(pooled, squared=True)
    off_diagonal = squared[np.triu_indices_from(squared, k=1)]
    median = np.median(off_diagonal)
    if median <= 0:  # at least half of the samples coincide: fall back on the mean distance
        median = off_diagonal.mean()
    if median <= 0:  # every sample is the same point
        return 0.0
    kernel = np.exp(-squared / median)
    within_source = (kernel[:m, :m].sum() - m) / (m * (m - 1))
    within_target = (kernel[m:, m:].sum() - n) / (n * (n - 1))
    return float(within_source + within_target - 2 * kernel[:m, m:].mean())


def _subsample(part, rng: np.random.Generator):
    if part.shape[0] <= _MMD_MAX_SAMPLES:
        return part
    return part[np.sort(rng.choice(part.shape[0], _MMD_MAX_SAMPLES, replace=False))]


# --------------------------------------------------------------------------- depth profile
def _group_features(X_source, X_target, *, model, weights=None, head=None, image_size=None,
                    mean=None, std=None, path_column=None, max_length=128, batch_size=64,
                    random_state=None, device="auto") -> dict[str, tuple]:
    """Each layer group's pooled outputs on both domains: ``{group: (source, target)}``."""
    if not (isinstance(batch_size, numbers.Integral) and batch_size >= 1):
        raise ValueError(f"batch_size={batch_size!r}: pass an int >= 1.")
    with seeded(random_state):
        network = resolve_network(model, weights, n_outputs=2, head=head)
    runner = _GroupOutputs(network, resolve_device(device))
    source, target = (_collect(runner, adapt_for(model, X, path_column=path_column), network,
                               image_size, mean, std, max_length, batch_size)
                      for X in (X_source, X_target))
    return {name: (source[name], target[name]) for name in source}


def _collect(runner, inputs: Inputs, network, image_size, mean, std, max_length,
             batch_size) -> dict[str, np.ndarray | None]:
    loader, order = _loader(inputs, network, image_size, mean, std, max_length, batch_size)
    pooled = runner.collect(loader)
    if order is None:
        return pooled
    back = np.argsort(order)  # rows back in the caller's order
    return {name: None if rows is None else rows[back] for name, rows in pooled.items()}


def _loader(inputs: Inputs, network: ResolvedNetwork, image_size, mean, std, max_length,
            batch_size) -> tuple[DataLoader, np.ndarray | None]:
    """The batches of ``inputs``, and for texts the order they were sorted in (by length, so that
    each batch pads little: several times faster on sentences of mixed length)."""
    if inputs.kind == "texts":
        order = np.argsort([len(item) for item in inputs.items], kind="stable")
        inputs = Inputs(kind="texts", items=[inputs.items[i] for i in order])
        return DataLoader(InputDataset(inputs), batch_size=batch_size,
                          collate_fn=network.collate(max_length)), order
    if inputs.kind == "array":
        check_array_input(network, inputs.items.shape, image_size=image_size)
    transform = make_transform(inputs.kind, train=False, preprocessing=network.preprocessing,
                               image_size=image_size, mean=mean, std=std, augment=False)
    return DataLoader(InputDataset(inputs, transform=transform), batch_size=batch_size), None


class _GroupOutputs:
    """Runs the network once a batch, pooling the output of each group's last module."""

    def __init__(self, network: ResolvedNetwork, device: torch.device):
        self.module = network.module.to(device).eval()
        self.device = device
        self.layers = {group.name: self.module.get_submodule(group.modules[-1])
                       for group in network.groups if group.modules}
        self.channels_last = network.channels_last

    def collect(self, loader: DataLoader) -> dict[str, np.ndarray | None]:
        pooled: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}
        with torch.inference_mode():
            for x, _ in loader:
                batch = embed_layers(self.module, self.layers, to_device(x, self.device),
                                     channels_last=self.channels_last)
                for name, rows in batch.items():
                    pooled[name].append(rows.cpu())
        return {name: torch.cat(parts).double().numpy() if parts else None
                for name, parts in pooled.items()}


def _profile_frame(features: dict[str, tuple], cv, random_state) -> pd.DataFrame:
    rows, alike = [], _ALIKE
    for name, (source, target) in features.items():
        if source is None or target is None:
            rows.append({"group": name, "auc": np.nan, "auc_std": np.nan, "mmd2": np.nan})
            continue
        auc, auc_std = _domain_auc(source, target, cv, random_state)
        alike = _alike_below(source.shape[0], target.shape[0])
        rows.append({"group": name, "auc": auc, "auc_std": auc_std,
                     "mmd2": _mmd2(source, target, random_state)})
    frame = pd.DataFrame(rows, columns=PROFILE_COLUMNS)
    frame.attrs["advice"] = _depth_advice(frame, alike)
    return frame


# --------------------------------------------------------------------------- advice
def _alike_below(n_source: int, n_target: int) -> float:
    """The AUC under which domains count as alike: 0.6, or chance's reach on small domains.

    Chance's reach is 3 standard errors of the AUC of two samples from one distribution
    (Mann-Whitney: ``sqrt((m + n + 1) / (12 m n))``), 0.62 for two domains of 100 samples.
    """
    standard_error = np.sqrt((n_source + n_target + 1) / (12 * n_source * n_target))
    return max(_ALIKE, 0.5 + 3 * float(standard_error))


def _advice(auc: float, auc_std: float, alike: float = _ALIKE) -> str:
    measured = f"domain classifier AUC {auc:.2f} ± {auc_std:.2f}"
    if auc < alike:
        return (f"The domains look alike ({measured}): as a starting point, keep the pretrained "
                "backbone frozen and train a new head (freeze='backbone').")
    if auc < _CLEARLY:
        return (f"The domains differ moderately ({measured}): as a starting point, train a new "
                "head, then unfreeze the last layer groups at a low learning rate "
                "(freeze='backbone', unfreeze_at=..., unfreeze=2).")
    return (f"The domains are clearly different ({measured}): as a starting point, fine-tune "
            "deeper at a low learning rate (freeze='none' with backbone_lr_mult=0.1 or "
            "layer_decay=0.7).")


def _depth_advice(profile: pd.DataFrame, alike: float = _ALIKE) -> str:
    measured = profile.dropna(subset=["auc"]).reset_index(drop=True)
    if measured.empty:
        return "No layer group could be measured."
    peak = measured.loc[measured.auc.idxmax()]
    if peak.auc < alike:
        return (f"No layer group separates the domains (highest AUC {peak.auc:.2f}, at "
                f"{peak.group!r}): a frozen backbone with a new head is a reasonable start.")
    onset = int(np.argmax(measured.auc.to_numpy() >= 0.5 + _ONSET_SHARE * (peak.auc - 0.5)))
    n_groups, name = len(measured), measured.group[onset]
    seen = f"AUC {measured.auc[onset]:.2f} at {name!r}"
    if onset > 0:
        seen += f", {measured.auc[0]:.2f} at {measured.group[0]!r}"
    heuristic = "As a heuristic after surgical fine-tuning (Lee et al., ICLR 2023)"
    if n_groups > 1 and onset < n_groups / 3:
        frozen = [f"{group}.*" for group in measured.group[onset + 1:]]
        return (f"The shift is already visible near the input ({seen}), as with a change of "
                f"style, colour or sensor. {heuristic}, tune the early groups up to {name!r} "
                f"with the head and keep the later ones frozen (freeze={frozen}).")
    last = n_groups - onset
    near_head = onset == n_groups - 1 or onset >= 2 * n_groups / 3
    where = "only near the head" if near_head else "midway through the backbone"
    return (f"The shift appears {where} ({seen}): the inputs look alike but what the features "
            f"mean differs. {heuristic}, tune the last {last} group(s), from {name!r} on, "
            f"with the head (freeze={last} freezes all but them).")
