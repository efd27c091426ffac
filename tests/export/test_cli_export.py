"""``skadapt export`` and ``skadapt predict model.onnx photos/``, run as the real command."""

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

from skadapt import PretrainedFineTuner, PretrainedFineTunerRegressor
from tests.export.test_onnx import TOLERANCE, _photo_folder, _tabular
from tests.finetune.conftest import TinyCNN
from tests.test_cli import skadapt

pytest.importorskip("onnx", reason="ONNX export tests need pip install skadapt[onnx]")
pytest.importorskip("onnxruntime", reason="ONNX export tests need pip install skadapt[onnx]")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread (tests/conftest.py)."""


def test_export_then_predict_a_folder_of_photos_with_onnxruntime(tmp_path):
    paths = _photo_folder(tmp_path)
    torch.manual_seed(0)
    clf = PretrainedFineTuner(TinyCNN(), image_size=16, max_epochs=1, feature_cache=False,
                              freeze="none", random_state=0).fit(paths, np.arange(9) % 2)
    joblib.dump(clf, tmp_path / "model.joblib")

    result = skadapt("export", "model.joblib", "model.onnx", cwd=tmp_path)
    assert "model.onnx" in result.stdout and "model.json" in result.stdout
    skadapt("predict", "model.onnx", "photos", "--out", "predictions.csv", cwd=tmp_path)
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert list(table.columns) == ["input", "prediction", "proba_0", "proba_1"]
    expected = clf.predict_proba([str(tmp_path / name) for name in table["input"]])
    assert np.abs(table[["proba_0", "proba_1"]].to_numpy() - expected).max() <= TOLERANCE
    np.testing.assert_array_equal(table["prediction"], clf.classes_[expected.argmax(axis=1)])


def test_export_a_saved_feature_extractor_then_embed_photos(tmp_path):
    import skadapt as skadapt_package

    paths = _photo_folder(tmp_path)
    torch.manual_seed(0)
    extractor = skadapt_package.PretrainedFeatureExtractor(TinyCNN(), image_size=16,
                                                           feature_cache=False).fit(paths)
    skadapt_package.save(extractor, tmp_path / "extractor")

    skadapt("export", "extractor", "extractor.onnx", cwd=tmp_path)
    skadapt("predict", "extractor.onnx", "photos", "--out", "embeddings.csv", cwd=tmp_path)
    table = pd.read_csv(tmp_path / "embeddings.csv")
    assert list(table.columns) == ["input"] + [f"emb{j}" for j in range(extractor.n_features_out_)]
    expected = extractor.transform([str(tmp_path / name) for name in table["input"]])
    assert np.abs(table.iloc[:, 1:].to_numpy() - expected).max() <= TOLERANCE


def test_export_quantized_regressor_then_predict_a_table(tmp_path):
    X, _ = _tabular()
    torch.manual_seed(0)
    reg = PretrainedFineTunerRegressor(torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(),
                                                           torch.nn.Linear(32, 1)),
                                       max_epochs=2, feature_cache=False, random_state=0)
    reg.fit(X, X[:, 0])
    joblib.dump(reg, tmp_path / "reg.joblib")
    pd.DataFrame(X, columns=list("abcdef")).to_csv(tmp_path / "table.csv", index=False)

    result = skadapt("export", "reg.joblib", "out/reg.onnx", "--quantize", cwd=tmp_path)
    assert "int8" in result.stdout
    skadapt("predict", "out/reg.onnx", "table.csv", "--out", "predictions.csv", cwd=tmp_path)
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert list(table.columns) == ["input", "prediction"]
    assert np.abs(table["prediction"].to_numpy() - reg.predict(X)).max() < 0.1  # int8 weights


def test_export_of_a_file_that_is_not_a_model_fails_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    result = skadapt("export", "notes.txt", "model.onnx", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("skadapt export: error:")
    assert not (tmp_path / "model.onnx").exists()
