"""``skadapt fit --cv K --n-jobs N --scheduler ADDRESS``: the folds fitted in local processes or on
a Dask cluster (a ``distributed.LocalCluster`` of one worker process here)."""

import sys

import numpy as np
import pandas as pd
import pytest

from skadapt.cli import _commands, _parallel, build_parser, main
from skadapt.cli._parallel import connect, parallel_folds
from tests.finetune.images import colour_folder
from tests.model_selection import dask_helpers

NETS = '''
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.features(x))


def mlp():
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
'''


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An image folder of two colours and the network's file, in a fresh working directory."""
    rng = np.random.default_rng(0)
    colour_folder(tmp_path / "photos", 8, 8, rng)
    X = rng.normal(size=(16, 3))
    pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=np.where(X[:, 0] > 0, "up", "down")) \
        .to_csv(tmp_path / "table.csv", index=False)
    (tmp_path / "scheduler_nets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


FIT = ["fit", "photos", "--model", "scheduler_nets.py:TinyNet", "--weights", "none",
       "--image-size", "8", "--epochs", "1", "--quiet", "--out", "model", "--cv", "2"]


# --------------------------------------------------------------------------- options
def test_the_options_are_parsed_and_checked(capsys):
    parser = build_parser()
    args = parser.parse_args([*FIT, "--n-jobs", "-1", "--scheduler", "tcp://host:8786",
                              "--cache-dir", "features"])
    assert (args.n_jobs, args.scheduler, args.cache_dir) == (-1, "tcp://host:8786", "features")
    assert parser.parse_args(FIT).n_jobs is None and parser.parse_args(FIT).scheduler is None
    for bad in ("0", "-2", "many"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([*FIT, "--n-jobs", bad])
        assert exit_info.value.code == 2
    assert "--n-jobs" in capsys.readouterr().err


def test_without_a_scheduler_the_folds_run_here_with_n_jobs():
    with parallel_folds(None, 3) as n_jobs:
        assert n_jobs == 3
    with parallel_folds(None, None) as n_jobs:
        assert n_jobs is None


def test_a_missing_dask_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"skadapt\[dask\]"):
        connect("tcp://127.0.0.1:8786")


def test_an_unreachable_scheduler_is_a_one_line_error(workspace, monkeypatch, capsys):
    pytest.importorskip("distributed")
    monkeypatch.setattr(_parallel, "CONNECT_TIMEOUT_S", 0.5)
    with pytest.raises(OSError, match="cannot reach a Dask scheduler"):
        connect("tcp://127.0.0.1:9")
    with pytest.raises(FileNotFoundError, match="no such scheduler file"):
        connect("scheduler.json")
    assert main([*FIT, "--scheduler", "scheduler.json"]) == 1
    assert "error: --scheduler 'scheduler.json'" in capsys.readouterr().err


def test_n_jobs_alone_fits_the_folds_in_local_processes(workspace, monkeypatch, capsys):
    seen = []
    real_evaluate = _commands.evaluate

    def recording(*args, n_jobs=None, **kwargs):  # the real one, in this process
        seen.append((n_jobs, kwargs["cv"].n_splits, args[0].callbacks))
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(_commands, "evaluate", recording)
    assert main([*FIT, "--n-jobs", "2"]) == 0
    assert seen == [(2, 2, None)]  # the folds' fits show no progress bars
    assert "Fitting the folds on 2 local processes" in capsys.readouterr().out


def test_the_parallel_options_without_cv_warn(workspace, capsys):
    args = [arg for arg in FIT if arg not in ("--cv", "2")]
    assert main([*args, "--holdout", "0", "--n-jobs", "2"]) == 0
    assert "--scheduler and --n-jobs spread the folds of --cv" in capsys.readouterr().err


# --------------------------------------------------------------------------- on a cluster
@pytest.fixture(scope="module")
def cluster(one_torch_thread):
    """One worker process (two threads: joblib fits one job at a time in the calling process
    when the cluster has one thread), started in the repository's folder, not the tests' ones."""
    dask = pytest.importorskip("dask", reason="needs dask: pip install 'skadapt[dask]'")
    distributed = pytest.importorskip("distributed")
    # forked from this process: torch already imported (tasks still travel pickled)
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                     dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(1)
        yield cluster, client


def test_fit_cv_runs_its_folds_on_the_cluster_with_a_shared_cache(workspace, cluster, capsys):
    """A --model file the worker cannot import by itself (it is sent), a relative --cache-dir:
    the folds' features are computed there, once; the report and the final fit here reuse them."""
    cluster, client = cluster
    code = main(["fit", "table.csv", "--model", "scheduler_nets.py:mlp", "--weights", "none",
                 "--quiet", "--out", "model", "--cv", "2", "--scheduler",
                 cluster.scheduler_address, "--cache-dir", "features"])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert f"Fitting the folds on the Dask cluster at {cluster.scheduler_address}" in output.out
    assert "Scores over 2 folds" in output.out
    features = str(workspace / "features")
    on_worker = client.run(dask_helpers.cache_stats, features)
    assert sum(stats["computed"] for stats in on_worker.values()) == 16  # each sample, there
    assert dask_helpers.cache_stats(features)["computed"] == 0  # here: read from the folder


def test_fit_cv_on_the_cluster_reads_relative_image_paths(workspace, cluster, capsys):
    """DATA given relative to this folder; the worker runs in another one."""
    cluster, _ = cluster
    code = main([*FIT, "--scheduler", cluster.scheduler_address])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert "Scores over 2 folds" in output.out
    assert (workspace / "model-report" / "report.json").is_file()


def test_a_model_module_the_workers_cannot_import_is_a_clear_error(workspace, cluster, capsys):
    """'module:Name' is imported here from the working folder, which the worker does not see: a
    task it could not unpickle would never finish, so the command checks first."""
    cluster, _ = cluster
    (workspace / "hidden_nets.py").write_text(NETS)
    code = main([*FIT, "--model", "hidden_nets:TinyNet", "--scheduler", cluster.scheduler_address])
    error = capsys.readouterr().err
    assert code == 1
    assert "cannot import 'hidden_nets'" in error and "--model path/to/file.py:Name" in error
