"""ONNX export: parity with the PyTorch estimator, metadata round trip, quantization, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

from skadapt import ChannelStandardizer, PretrainedFineTuner, PretrainedFineTunerRegressor
from tests.export.conftest import sentiment_task
from tests.finetune.conftest import TinyCNN, color_task
from tests.finetune.images import gradient

pytest.importorskip("onnx", reason="ONNX export tests need pip install skadapt[onnx]")
pytest.importorskip("onnxruntime", reason="ONNX export tests need pip install skadapt[onnx]")

from skadapt.export import OnnxPredictor, export_onnx  # noqa: E402

TOLERANCE = 1e-4
FAST = {"max_epochs": 1, "batch_size": 16, "feature_cache": False, "freeze": "none",
        "random_state": 0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread (tests/conftest.py)."""


def _max_difference(expected, exported) -> float:
    assert exported.shape == expected.shape
    return float(np.abs(np.asarray(exported) - np.asarray(expected)).max())


def _check_parity(estimator, onnx_model, X):
    """At batch 1, batch 7 and the whole X, as predict_proba (or predict) of the estimator."""
    method = "predict_proba" if hasattr(onnx_model, "classes_") else "predict"
    for batch in (X[:1], X[:7], X):
        expected = getattr(estimator, method)(batch)
        assert _max_difference(expected, getattr(onnx_model, method)(batch)) <= TOLERANCE


def _tabular(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=5.0, scale=3.0, size=(n, 6)).astype(np.float32)
    return X, np.where(X[:, 0] + X[:, 1] > 10, "high", "low")


def _mlp(n_in=6, n_out=2):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, n_out))


def _small_vit():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                             hidden_dim=16, mlp_dim=32)


# --------------------------------------------------------------------------- parity
def test_a_cnn_on_image_arrays_matches_onnxruntime_at_every_batch_size(tiny_checkpoint, tmp_path):
    X, y = color_task(n=32)
    model = TinyCNN()
    model.load_state_dict(torch.load(tiny_checkpoint, weights_only=True))
    clf = PretrainedFineTuner(model, max_epochs=2, batch_size=16, random_state=0).fit(X, y)
    exported = export_onnx(clf, tmp_path / "cnn.onnx", example=X[:2])
    onnx_model = OnnxPredictor(exported.path)
    _check_parity(clf, onnx_model, X)
    np.testing.assert_array_equal(onnx_model.predict(X), clf.predict(X))
    assert exported.metadata["input"] == {"kind": "array", "names": ["input"],
                                          "shape": [None, 3, 16, 16]}


def test_a_vit_matches_onnxruntime(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3, 32, 32)).astype(np.float32)
    y = np.arange(12) % 3
    clf = PretrainedFineTuner(_small_vit(), **FAST).fit(X, y)
    onnx_model = OnnxPredictor(export_onnx(clf, tmp_path / "vit.onnx").path)
    _check_parity(clf, onnx_model, X)


def test_a_text_encoder_matches_onnxruntime_with_its_tokenizer_saved_beside(tiny_bert, tmp_path):
    texts, y = sentiment_task(n=24)
    clf = PretrainedFineTuner(tiny_bert, max_length=16, **FAST).fit(texts, y)
    exported = export_onnx(clf, tmp_path / "text.onnx")
    tokenizer = tmp_path / "text.tokenizer"
    assert tokenizer in exported.files and (tokenizer / "tokenizer_config.json").exists()
    assert exported.metadata["input"]["names"] == ["input_ids", "attention_mask"]
    onnx_model = OnnxPredictor(exported.path)
    _check_parity(clf, onnx_model, texts)
    long_text = [" ".join(["really"] * 40 + ["great"])]  # truncated to max_length, as in torch
    assert _max_difference(clf.predict_proba(long_text), onnx_model.predict_proba(long_text)) <= TOLERANCE


def test_a_pipeline_of_scalers_and_a_fine_tuner_is_one_graph(tmp_path):
    X, y = _tabular()
    pipe = make_pipeline(StandardScaler(), MinMaxScaler(), PretrainedFineTuner(_mlp(), **FAST))
    pipe.fit(X, y)
    exported = export_onnx(pipe, tmp_path / "pipe.onnx")
    assert [s["class"] for s in exported.metadata["preprocessing"]["steps"]] == [
        "StandardScaler", "MinMaxScaler"]
    onnx_model = OnnxPredictor(exported.path)
    _check_parity(pipe, onnx_model, X)
    np.testing.assert_array_equal(onnx_model.predict(X), pipe.predict(X))


def test_a_channel_standardizer_before_an_image_fine_tuner_runs_in_the_graph(tmp_path):
    X, y = color_task(n=24)
    X = X * 4 + 2
    torch.manual_seed(0)
    pipe = make_pipeline(ChannelStandardizer(), PretrainedFineTuner(TinyCNN(), **FAST)).fit(X, y)
    onnx_model = OnnxPredictor(export_onnx(pipe, tmp_path / "pipe.onnx", example=X[:2]).path)
    _check_parity(pipe, onnx_model, X)


def test_the_fine_tuners_own_mean_and_std_on_arrays_are_in_the_graph(tmp_path):
    X, y = color_task(n=24)
    torch.manual_seed(0)
    clf = PretrainedFineTuner(TinyCNN(), mean=[0.5, 0.1, -0.2], std=[2.0, 1.5, 3.0],
                              **FAST).fit(X, y)
    _check_parity(clf, OnnxPredictor(export_onnx(clf, tmp_path / "m.onnx", example=X).path), X)


def _photo_folder(tmp_path, n=9):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        pixels = np.clip(gradient(40 + i, 30) + rng.integers(0, 60, size=(30, 40 + i, 3)), 0, 255)
        paths.append(str(folder / f"photo{i}.png"))
        Image.fromarray(pixels.astype(np.uint8)).save(paths[-1])
    return paths


def test_image_files_are_preprocessed_from_the_stored_numbers_as_by_the_estimator(tmp_path):
    paths = _photo_folder(tmp_path)
    y = np.arange(len(paths)) % 2
    torch.manual_seed(0)
    clf = PretrainedFineTuner(TinyCNN(), image_size=16, augment=False, **FAST).fit(paths, y)
    exported = export_onnx(clf, tmp_path / "files.onnx")
    stored = exported.metadata["preprocessing"]
    assert (stored["crop_size"], stored["resize_size"]) == (16, 18)
    assert stored["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads((tmp_path / "files.json").read_text()) == exported.metadata
    onnx_model = OnnxPredictor(exported.path)
    _check_parity(clf, onnx_model, paths)
    images = [Image.open(path) for path in paths[:3]]  # PIL images too
    assert _max_difference(clf.predict_proba(images), onnx_model.predict_proba(images)) <= TOLERANCE


# --------------------------------------------------------------------------- what is stored
@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu"]), np.array([3, 10, 42]),
                                    np.array(["b", "a", "c"], dtype=object)])
def test_class_labels_round_trip(tmp_path, labels):
    X, _ = _tabular(n=30)
    y = labels[np.arange(30) % 3]
    clf = PretrainedFineTuner(_mlp(n_out=3), **FAST).fit(X, y)
    onnx_model = OnnxPredictor(export_onnx(clf, tmp_path / "c.onnx").path)
    assert onnx_model.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(onnx_model.classes_, clf.classes_)
    np.testing.assert_array_equal(onnx_model.predict(X), clf.predict(X))


def test_the_metadata_is_in_the_graph_itself(tmp_path):
    import onnx

    X, y = _tabular()
    clf = PretrainedFineTuner(_mlp(), **FAST).fit(X, y)
    exported = export_onnx(clf, tmp_path / "alone")
    assert exported.path == tmp_path / "alone.onnx"
    (tmp_path / "alone.json").unlink()  # the graph alone is enough
    stored = {p.key: json.loads(p.value) for p in onnx.load(str(exported.path)).metadata_props}
    assert stored["skadapt"]["classes"]["values"] == ["high", "low"]
    np.testing.assert_array_equal(OnnxPredictor(exported.path).predict(X), clf.predict(X))


@pytest.mark.parametrize("two_targets", [False, True])
def test_a_regressor_exports_its_values(tmp_path, two_targets):
    X, _ = _tabular()
    y = np.stack([X[:, 0] * 0.5, X[:, 1]], axis=1) if two_targets else X[:, 0] * 0.5
    reg = PretrainedFineTunerRegressor(_mlp(n_out=1), **FAST).fit(X, y)
    exported = export_onnx(reg, tmp_path / "reg.onnx")
    assert exported.metadata["task"] == "regression"
    onnx_model = OnnxPredictor(exported.path)
    assert not hasattr(onnx_model, "classes_")
    _check_parity(reg, onnx_model, X)
    assert not hasattr(onnx_model, "predict_proba")


def test_the_batch_size_of_the_graph_is_dynamic(tmp_path):
    import onnxruntime

    X, y = _tabular()
    clf = PretrainedFineTuner(_mlp(), **FAST).fit(X, y)
    path = export_onnx(clf, tmp_path / "d.onnx").path
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    for n in (1, 2, 5, 33):
        (out,) = session.run(None, {"input": X[:n]})
        assert out.shape == (n, 2)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)  # probabilities


# --------------------------------------------------------------------------- quantization
def test_int8_quantization_shrinks_the_graph_and_reports_the_accuracy_change(tmp_path):
    X, y = _tabular(n=60)
    torch.manual_seed(0)
    wide = torch.nn.Sequential(torch.nn.Linear(6, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, 2))
    clf = PretrainedFineTuner(wide, **{**FAST, "max_epochs": 5}).fit(X, y)
    exported = export_onnx(clf, tmp_path / "q.onnx", quantize=True, check=(X, y))
    assert exported.float_n_bytes > 3 * exported.n_bytes
    report = exported.quantization
    assert report["float32_score"] == pytest.approx(clf.score(X, y))
    assert abs(report["int8_score"] - report["float32_score"]) <= 0.1
    assert 0 < report["max_abs_difference"] < 0.1
    onnx_model = OnnxPredictor(exported.path)  # the metadata survived
    np.testing.assert_array_equal(onnx_model.classes_, clf.classes_)


# --------------------------------------------------------------------------- errors
def test_a_pipeline_step_that_is_not_numeric_scaling_is_refused_by_name(tmp_path):
    X, y = _tabular()
    pipe = make_pipeline(FunctionTransformer(np.log1p), PretrainedFineTuner(_mlp(), **FAST))
    pipe.fit(np.abs(X), y)
    with pytest.raises(TypeError, match="'functiontransformer' is a FunctionTransformer"):
        export_onnx(pipe, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_what_cannot_be_exported_fails_clearly(tmp_path):
    from sklearn.linear_model import LogisticRegression

    X, y = _tabular()
    with pytest.raises(TypeError, match="LogisticRegression"):
        export_onnx(LogisticRegression().fit(X, y), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="not fitted"):
        export_onnx(PretrainedFineTuner(_mlp()), tmp_path / "x.onnx")
    resized = PretrainedFineTuner(TinyCNN(), image_size=8, **FAST).fit(*color_task(n=8))
    with pytest.raises(ValueError, match="image_size=8 resizes the arrays"):
        export_onnx(resized, tmp_path / "x.onnx")
    unknown_size = PretrainedFineTuner(TinyCNN(), **FAST).fit(*color_task(n=8))
    with pytest.raises(ValueError, match="pass example= a few samples of X"):
        export_onnx(unknown_size, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_exporting_leaves_the_estimator_and_torch_as_they_were(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3, 32, 32)).astype(np.float32)
    clf = PretrainedFineTuner(_small_vit(), **FAST).fit(X, np.arange(12) % 3)
    before = clf.predict_proba(X)
    clf.module_.train()
    export_onnx(clf, tmp_path / "v.onnx")
    assert clf.module_.training and torch.backends.mha.get_fastpath_enabled()
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_a_missing_tokenizer_folder_is_named(tiny_bert, tmp_path):
    import shutil

    texts, y = sentiment_task(n=8)
    clf = PretrainedFineTuner(tiny_bert, max_length=16, **FAST).fit(texts, y)
    path = export_onnx(clf, tmp_path / "t.onnx").path
    shutil.rmtree(tmp_path / "t.tokenizer")
    with pytest.raises(FileNotFoundError, match="t.tokenizer is missing"):
        OnnxPredictor(path).predict(texts)


def test_a_file_not_exported_by_skadapt_is_refused(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "plain.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3),), str(path), dynamo=False)
    with pytest.raises(ValueError, match="not exported by skadapt"):
        OnnxPredictor(path)


def test_wrongly_shaped_arrays_are_refused_before_onnxruntime(tmp_path):
    X, y = _tabular()
    clf = PretrainedFineTuner(_mlp(), **FAST).fit(X, y)
    onnx_model = OnnxPredictor(export_onnx(clf, tmp_path / "s.onnx").path)
    with pytest.raises(ValueError, match=r"takes \(n_samples, 6\)"):
        onnx_model.predict(X[:, :4])


# --------------------------------------------------------------------------- compare_models
def test_compare_models_reports_onnxruntime_latency_beside_pytorchs():
    from sklearn.dummy import DummyClassifier

    from skadapt import compare_models

    X, y = color_task(n=32)
    tuner = PretrainedFineTuner(TinyCNN(), validation_fraction=None, **FAST)
    table = compare_models({"tiny_cnn": tuner, "majority": DummyClassifier()}, X, y, cv=2,
                           latency_batch_size=8, n_repeats=2, onnx_latency=True)
    assert list(table.columns).index("onnx_latency_ms") == list(table.columns).index("latency_ms") + 1
    assert table.loc["tiny_cnn", "onnx_latency_ms"] > 0
    assert np.isnan(table.loc["majority", "onnx_latency_ms"])  # not a fine-tuner
    plain = compare_models({"majority": DummyClassifier()}, X, y, cv=2, n_repeats=1)
    assert "onnx_latency_ms" not in plain.columns


# --------------------------------------------------------------------------- feature extractors
def _check_embeddings(extractor, onnx_model, X):
    for batch in (X[:1], X[:7], X):
        assert _max_difference(extractor.transform(batch), onnx_model.transform(batch)) <= TOLERANCE


@pytest.mark.parametrize("layer, pooling", [(None, "mean"), ("features.0", "max")])
def test_a_feature_extractor_exports_its_embeddings(layer, pooling, tmp_path):
    from skadapt import PretrainedFeatureExtractor

    X, _ = color_task(n=12)
    torch.manual_seed(0)
    cnn = torch.nn.Sequential()
    cnn.add_module("features", torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 6, 3), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()))
    cnn.add_module("fc", torch.nn.Linear(6, 10))
    extractor = PretrainedFeatureExtractor(cnn, layer=layer, pooling=pooling,
                                           feature_cache=False).fit(X)
    exported = export_onnx(extractor, tmp_path / "embed.onnx", example=X[:2])
    onnx_model = OnnxPredictor(exported.path)
    _check_embeddings(extractor, onnx_model, X)
    assert exported.metadata["task"] == "embedding"
    assert exported.metadata["n_features_out"] == extractor.n_features_out_
    assert not hasattr(onnx_model, "predict") and not hasattr(onnx_model, "classes_")


def test_a_vit_feature_extractor_matches_onnxruntime(tmp_path):
    from skadapt import PretrainedFeatureExtractor

    X = np.random.default_rng(0).normal(size=(9, 3, 32, 32)).astype(np.float32)
    extractor = PretrainedFeatureExtractor(_small_vit(), feature_cache=False).fit(X)
    onnx_model = OnnxPredictor(export_onnx(extractor, tmp_path / "vit.onnx").path)
    _check_embeddings(extractor, onnx_model, X)


def test_a_text_feature_extractor_matches_onnxruntime(tiny_bert, tmp_path):
    from skadapt import PretrainedFeatureExtractor

    texts, _ = sentiment_task(n=9)
    texts[0] = texts[0] + " and a much longer text than the others, padded by the rest"
    extractor = PretrainedFeatureExtractor(tiny_bert, feature_cache=False).fit(texts)
    exported = export_onnx(extractor, tmp_path / "text.onnx", quantize=True, check=(texts, None))
    assert exported.quantization.keys() == {"max_abs_difference"}
    float_model = OnnxPredictor(export_onnx(extractor, tmp_path / "float.onnx").path)
    _check_embeddings(extractor, float_model, texts)
