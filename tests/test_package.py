"""The package's public names: each importable from ``skadapt``, torch loaded only when needed."""

import subprocess
import sys

import pytest

import skadapt


@pytest.mark.parametrize("name", skadapt.__all__)
def test_every_public_name_is_the_object_its_subpackage_defines(name):
    public = getattr(skadapt, name)
    subpackage = sys.modules[public.__module__.rsplit("._", 1)[0]]
    assert getattr(subpackage, name) is public
    assert name in dir(skadapt)


def test_an_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'FineTuner'"):
        skadapt.FineTuner  # noqa: B018


def _modules_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(*sys.modules)"],
                          capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_command_line_and_the_data_preparation_do_not_import_torch():
    # torch takes seconds to import: --help and tabular cleaning should not wait for it
    assert "torch" not in _modules_after("import skadapt.cli; from skadapt import DataCleaner")
    assert "torch" in _modules_after("from skadapt import PretrainedFineTuner")


PUBLIC_PACKAGES = ["skadapt", "skadapt.preprocessing", "skadapt.finetune", "skadapt.text",
                   "skadapt.networks", "skadapt.model_selection", "skadapt.evaluation",
                   "skadapt.cli"]


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_public_subpackage_imports_first_in_a_fresh_interpreter(package):
    # an import cycle only shows when the cycle's own module is the first one imported
    done = subprocess.run([sys.executable, "-c", f"import {package}"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
