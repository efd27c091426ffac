"""ChannelStandardizer: learned or given per-channel statistics, inverse, shapes and errors."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skadapt.preprocessing import ChannelStandardizer

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _images(n=10, dtype="float32"):
    rng = np.random.default_rng(0)
    scale = np.array([1.0, 5.0, 0.1]).reshape(1, 3, 1, 1)
    shift = np.array([0.0, -3.0, 10.0]).reshape(1, 3, 1, 1)
    return (rng.normal(size=(n, 3, 6, 5)) * scale + shift).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_learned_statistics_standardize_each_channel(dtype):
    X = _images(dtype=dtype)
    scaler = ChannelStandardizer().fit(X)
    out = scaler.transform(X)
    assert out.shape == X.shape and out.dtype == X.dtype
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-5)
    np.testing.assert_allclose(scaler.mean_, [0, -3, 10], atol=0.5)
    assert scaler.n_features_in_ == 3


def test_given_statistics_are_used_as_is_and_inverse_transform_undoes_them():
    X = np.random.default_rng(0).uniform(size=(4, 3, 8, 8)).astype("float32")
    scaler = ChannelStandardizer(mean=IMAGENET_MEAN, std=IMAGENET_STD).fit(X[:1])
    out = scaler.transform(X)
    expected = (X - np.reshape(IMAGENET_MEAN, (1, 3, 1, 1))) / np.reshape(IMAGENET_STD,
                                                                          (1, 3, 1, 1))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(scaler.inverse_transform(out), X, atol=1e-6)


def test_a_constant_channel_is_only_centred():
    X = _images()
    X[:, 2] = 7.0
    out = ChannelStandardizer().fit_transform(X)
    np.testing.assert_allclose(out[:, 2], 0.0)


def test_two_d_input_behaves_like_standard_scaler_and_can_output_pandas():
    X = pd.DataFrame(np.random.default_rng(0).normal(3, 2, size=(20, 2)), columns=["r", "g"])
    out = ChannelStandardizer().set_output(transform="pandas").fit_transform(X)
    assert list(out.columns) == ["r", "g"]
    np.testing.assert_allclose(out, StandardScaler().fit_transform(X))


def test_inside_a_pipeline_with_cross_validation():
    X = _images(n=40)
    y = (X[:, 0].mean(axis=(1, 2)) > 0).astype(int)
    flatten = FunctionTransformer(lambda a: a.reshape(len(a), -1))
    pipe = make_pipeline(ChannelStandardizer(), flatten, LogisticRegression())
    assert cross_val_score(pipe, X, y, cv=4).mean() > 0.6


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"mean": [0.5, 0.5]}, "mean has 2 values but X has 3 channels"),
        ({"std": [1.0, 0.0, 1.0]}, "std must be > 0"),
    ],
)
def test_statistics_that_do_not_fit_the_channels(params, match):
    with pytest.raises(ValueError, match=match):
        ChannelStandardizer(**params).fit(_images())


def test_wrong_channel_count_at_transform_and_pandas_output_of_images():
    scaler = ChannelStandardizer().fit(_images())
    with pytest.raises(ValueError, match="X has 1 features, but ChannelStandardizer is expecting 3"):
        scaler.transform(_images()[:, :1])
    with pytest.raises(ValueError, match="needs 2-D input.*set_output\\(transform='default'\\)"):
        scaler.set_output(transform="pandas").transform(_images())


def test_nan_is_refused():
    X = _images()
    X[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ChannelStandardizer().fit(X)
