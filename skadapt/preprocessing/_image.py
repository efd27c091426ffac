"""Per-channel standardization of image arrays (n, channels, height, width).

For tabular data use sklearn's own ``StandardScaler``; this is its counterpart for images, where
the statistics are per channel over all pixels, and where a pretrained model often dictates them
(torchvision's ImageNet weights expect mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) on
pixels scaled to [0, 1]).

Axis 1 is the channel axis, every axis after it is spatial: (n, c, h, w) images, (n, c, length)
signals, and (n, c) tables all work, the last like ``StandardScaler``.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_is_fitted, validate_data

from skadapt.preprocessing._validation import check_numeric_frame, reject_sparse

__all__ = ["ChannelStandardizer"]


class ChannelStandardizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardize each channel of image arrays: ``(X - mean[c]) / std[c]``.

    The statistics are learned in ``fit`` over all samples and pixels of each channel, or given
    (e.g. a pretrained model's own normalization). ``inverse_transform`` undoes it, to look at
    the images again.

    Parameters
    ----------
    mean : float or sequence of float, default=None
        Mean per channel (a float: the same for all). ``None``: learned in ``fit``.
    std : float or sequence of float, default=None
        Standard deviation per channel, > 0. ``None``: learned in ``fit``; a channel whose
        learned std is 0 (constant) gets 1, as in ``StandardScaler``, so it is only centred.

    Attributes
    ----------
    mean_ : ndarray of shape (n_channels,)
    std_ : ndarray of shape (n_channels,)
    n_features_in_ : int
        Number of channels (``X.shape[1]``).
    feature_names_in_ : ndarray of str
        For 2-D DataFrame input with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from skadapt.preprocessing import ChannelStandardizer
    >>> rng = np.random.default_rng(0)
    >>> images = rng.uniform(size=(8, 3, 4, 4)).astype("float32")
    >>> scaler = ChannelStandardizer().fit(images)
    >>> scaled = scaler.transform(images)
    >>> scaled.shape, scaled.dtype
    ((8, 3, 4, 4), dtype('float32'))
    >>> np.round(scaled.mean(axis=(0, 2, 3)), 6) + 0.0
    array([0., 0., 0.], dtype=float32)
    >>> imagenet = ChannelStandardizer(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    >>> np.allclose(imagenet.fit(images).inverse_transform(imagenet.transform(images)), images,
    ...             atol=1e-6)
    True
    """

    _parameter_constraints = {
        "mean": [Interval(Real, None, None, closed="neither"), "array-like", None],
        "std": [Interval(Real, 0, None, closed="neither"), "array-like", None],
    }

    def __init__(self, mean=None, std=None):
        self.mean = mean
        self.std = std

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn (or check) the per-channel mean and std.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, ...)
            Images (n, c, h, w), or any array whose axis 1 is the channel axis.
        y : None
            Ignored.

        Returns
        -------
        self : ChannelStandardizer
        """
        X = self._validate(X, reset=True)
        n_channels = X.shape[1]
        axes = _pixel_axes(X)
        if self.mean is None:
            self.mean_ = X.mean(axis=axes, dtype=np.float64)
        else:
            self.mean_ = _per_channel("mean", self.mean, n_channels)
        if self.std is None:
            std = X.std(axis=axes, dtype=np.float64)
            self.std_ = np.where(std > 10 * np.finfo(X.dtype).eps, std, 1.0)
        else:
            self.std_ = _per_channel("std", self.std, n_channels)
            if (self.std_ <= 0).any():
                raise ValueError(f"std must be > 0 for every channel, got {self.std!r}.")
        return self

    def transform(self, X):
        """Standardize each channel.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, ...)

        Returns
        -------
        X_scaled : ndarray of the same shape and float dtype
        """
        check_is_fitted(self, "mean_")
        X = self._validate(X, reset=False)
        mean, std = self._broadcast(X)
        return ((X - mean) / std).astype(X.dtype, copy=False)

    def inverse_transform(self, X):
        """Undo :meth:`transform`: ``X * std + mean``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, ...)

        Returns
        -------
        X_original : ndarray of the same shape and float dtype
        """
        check_is_fitted(self, "mean_")
        X = self._validate(X, reset=False)
        mean, std = self._broadcast(X)
        return (X * std + mean).astype(X.dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _validate(self, X, *, reset: bool) -> np.ndarray:
        reject_sparse(X, "ChannelStandardizer")
        check_numeric_frame(X, "ChannelStandardizer")
        X = validate_data(self, X, reset=reset, allow_nd=True, dtype=(np.float64, np.float32))
        if X.ndim > 2 and _get_output_config("transform", self)["dense"] != "default":
            raise ValueError(
                f"set_output(transform='pandas') needs 2-D input, but X has shape {X.shape}: "
                "image arrays stay numpy arrays; call set_output(transform='default')."
            )
        return X

    def _broadcast(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = (1, -1) + (1,) * (X.ndim - 2)
        return self.mean_.reshape(shape), self.std_.reshape(shape)


def _pixel_axes(X: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, X.ndim))


def _per_channel(name: str, value, n_channels: int) -> np.ndarray:
    values = np.asarray(value, dtype=np.float64).ravel()
    if values.size == 1:
        return np.full(n_channels, values[0])
    if values.size != n_channels:
        raise ValueError(
            f"{name} has {values.size} values but X has {n_channels} channels (axis 1): give one "
            f"value per channel, or check that X is shaped (n, channels, height, width)."
        )
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return values
