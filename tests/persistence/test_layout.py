"""The persistence package imports on its own, and its public names are skadapt's."""

import subprocess
import sys

import skadapt
import skadapt.persistence


def test_it_imports_first_in_a_fresh_interpreter_without_torch():
    # the command line can import it cheaply: torch and sklearn load when a model is saved/loaded
    code = "import sys, skadapt.persistence; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_its_public_names_are_skadapts():
    for name in skadapt.persistence.__all__:
        assert getattr(skadapt, name) is getattr(skadapt.persistence, name)
