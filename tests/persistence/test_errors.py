"""A folder that is incomplete, modified, of another version, or needs a class that cannot be
imported gives a clear PersistenceError; what the safe format cannot hold is refused at saving."""

import json

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import EpochScoring

import skadapt
from skadapt import PersistenceError, PretrainedFeatureExtractor, PretrainedFineTuner
from tests.persistence._modules import LazyNet, TinyNet
from tests.persistence.conftest import edit_config


@pytest.fixture
def folder(fitted, tmp_path):
    return skadapt.save(fitted, tmp_path / "model")


def test_it_is_a_value_error():
    assert issubclass(PersistenceError, ValueError)


@pytest.mark.parametrize("name", ["weights.safetensors", "config.json", "manifest.json"])
def test_a_missing_file_is_named(folder, name):
    (folder / name).unlink()
    with pytest.raises(PersistenceError, match=rf"{name} is missing.*save the model again"):
        skadapt.load(folder)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(PersistenceError, match="nowhere is not a folder"):
        skadapt.load(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["weights.safetensors", "config.json"])
def test_a_tampered_file_is_named(folder, name):
    data = bytearray((folder / name).read_bytes())
    data[-2] ^= 1
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(PersistenceError, match=rf"{name} has SHA-256 .* modified or damaged"):
        skadapt.load(folder)


@pytest.mark.parametrize(("version", "hint"), [(2, "upgrade skadapt"),
                                               (0, "save the model again")])
def test_another_format_version_is_refused(folder, version, hint):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = version
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PersistenceError, match=rf"format version {version}.*{hint}"):
        skadapt.load(folder)


def test_another_format_is_refused(folder):
    (folder / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(PersistenceError, match="not describe a model saved by skadapt.save"):
        skadapt.load(folder)


def test_a_class_that_moved_is_named(folder):
    edit_config(folder, lambda c: c["params"].update(
        model={"$class": "tests.persistence._modules:RenamedNet"}))
    with pytest.raises(PersistenceError, match="class RenamedNet from module "
                                               "'tests.persistence._modules'"):
        skadapt.load(folder)


def test_a_module_that_is_not_installed_is_named(folder):
    edit_config(folder, lambda c: c["params"].update(
        model={"$class": "my_private_models.nets:TinyNet"}))
    with pytest.raises(PersistenceError, match="'my_private_models.nets'.*install"):
        skadapt.load(folder)


def test_a_class_of_the_wrong_kind_is_refused(folder):
    # a config can only name classes of the kind a parameter takes (no arbitrary callables)
    edit_config(folder, lambda c: c["params"].update(optimizer={"$class": "subprocess:Popen"}))
    with pytest.raises(PersistenceError, match="subprocess:Popen is not a subclass of Optimizer"):
        skadapt.load(folder)
    edit_config(folder, lambda c: c["params"].update(optimizer={"$class": "os:system"}))
    with pytest.raises(PersistenceError, match="os:system is not a class"):
        skadapt.load(folder)


def test_classes_are_accepted_only_where_a_parameter_takes_one(folder):
    # skorch would build a callback class with no arguments: a config cannot name one
    edit_config(folder, lambda c: c["params"].update(callbacks=[{"$class": "tests:Anything"}]))
    with pytest.raises(PersistenceError, match=r"callbacks: a class \('tests:Anything'\) is not "
                                               "accepted"):
        skadapt.load(folder)
    edit_config(folder, lambda c: c["params"].update(callbacks=None, verbose={"$class": "a:B"}))
    with pytest.raises(PersistenceError, match="verbose: a class"):
        skadapt.load(folder)


def test_only_known_fitted_attributes_are_set(folder):
    edit_config(folder, lambda c: c["fitted"].update(predict="not a method"))
    with pytest.raises(PersistenceError, match=r"fitted attributes \['predict'\]"):
        skadapt.load(folder)


def test_an_unknown_estimator_is_refused(folder):
    edit_config(folder, lambda c: c.update(estimator="GridSearchCV"))
    with pytest.raises(PersistenceError, match="estimator 'GridSearchCV', which this skadapt cannot"):
        skadapt.load(folder)


def test_weights_that_do_not_fit_the_network_are_refused(folder):
    edit_config(folder, lambda c: c["fitted"].update(classes_={"$array": ["a", "b", "c"],
                                                               "dtype": "<U1"}))
    with pytest.raises(PersistenceError, match="does not fit the network rebuilt"):
        skadapt.load(folder)


def test_an_unfitted_estimator_is_refused(tmp_path):
    with pytest.raises(NotFittedError):
        skadapt.save(PretrainedFineTuner(TinyNet), tmp_path / "model")


@pytest.mark.parametrize(("params", "message"), [
    ({"callbacks": [("score", EpochScoring("accuracy"))]}, "callbacks are code"),
    ({"criterion": torch.nn.CrossEntropyLoss()}, "criterion=CrossEntropyLoss.. is an instance"),
    ({"augment": lambda image: image}, "augment is a callable"),
    ({"predict_nonlinearity": lambda out: out}, "predict_nonlinearity=.* has no safe repr"),
    ({"predict_nonlinearity": torch.nn.Softmax}, "predict_nonlinearity is a class"),
])
def test_what_has_no_safe_form_is_refused(data, tmp_path, params, message):
    clf = PretrainedFineTuner(TinyNet, max_epochs=1, random_state=0).fit(*data)
    clf.set_params(**params)
    with pytest.raises(PersistenceError, match=message):
        skadapt.save(clf, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_a_class_defined_in_a_function_is_refused(data, tmp_path):
    class LocalNet(TinyNet):
        pass

    clf = PretrainedFineTuner(LocalNet, max_epochs=1, random_state=0).fit(*data)
    with pytest.raises(PersistenceError, match="LocalNet, defined in a script or inside a "
                                               "function.*importable"):
        skadapt.save(clf, tmp_path / "model")


def test_an_instance_its_class_does_not_rebuild_is_refused(data, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    clf = PretrainedFineTuner(net, max_epochs=1, random_state=0).fit(*data)
    with pytest.raises(PersistenceError, match=r"structure differs from Sequential\(\)"):
        skadapt.save(clf, tmp_path / "model")
    clf = PretrainedFineTuner(TinyNet(n_hidden=5), max_epochs=1, random_state=0).fit(*data)
    with pytest.raises(PersistenceError, match=r"structure differs from TinyNet\(\)"):
        skadapt.save(clf, tmp_path / "model")


def test_a_network_with_lazy_layers_is_refused(data, tmp_path):
    clf = PretrainedFineTuner(LazyNet, max_epochs=1, random_state=0).fit(*data)
    with pytest.raises(PersistenceError, match="lazy layers"):
        skadapt.save(clf, tmp_path / "model")


def test_other_estimators_are_not_supported_yet(fitted, tmp_path):
    with pytest.raises(PersistenceError, match="saving a GridSearchCV is not supported yet"):
        skadapt.save(GridSearchCV(fitted, {"lr": [0.1]}), tmp_path / "model")
    with pytest.raises(PersistenceError, match="saving a StandardScaler is not supported yet"):
        skadapt.save(StandardScaler().fit(np.eye(3)), tmp_path / "model")
    with pytest.raises(NotFittedError):
        skadapt.save(PretrainedFeatureExtractor(TinyNet), tmp_path / "model")


def test_a_folder_that_is_not_a_model_is_never_overwritten(fitted, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("mine")
    with pytest.raises(PersistenceError, match="not a saved skadapt model"):
        skadapt.save(fitted, tmp_path / "model", overwrite=True)
    assert (tmp_path / "model" / "notes.txt").read_text() == "mine"


def test_loaded_values_are_what_was_saved(folder, data):
    # loading is deterministic: twice the same predictions
    X, _ = data
    np.testing.assert_array_equal(skadapt.load(folder).predict_proba(X),
                                  skadapt.load(folder).predict_proba(X))


def test_a_config_this_version_cannot_rebuild_is_refused(folder):
    # e.g. written by another skadapt that records the fitted state differently
    edit_config(folder, lambda c: c.pop("fitted"))
    with pytest.raises(PersistenceError, match="can rebuild .KeyError: 'fitted'.*saved by "
                                               "skadapt '0.1.0'"):
        skadapt.load(folder)
