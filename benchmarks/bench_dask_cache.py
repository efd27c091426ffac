"""A grid search on a Dask cluster: how often the frozen backbone runs, per process caches vs a shared
``cache_dir`` without and with its lock files.

``GridSearchCV`` (5 stratified folds x 8 values of ``head_C``, then a refit here: 41 fits) of
``PretrainedFineTuner(freeze="backbone")`` (convex head) on a frozen CIFAR-10 ResNet20, the
ants-vs-bees training photos given as image paths at 32 px, through joblib's Dask backend on a
``distributed.LocalCluster`` of 2 worker processes (one thread each, spawned as by default):

- per-process memory: no ``cache_dir``; each worker keeps its own in-memory cache;
- shared folder, no locks: ``cache_dir`` shared by the workers, each computing what it misses
  (what skadapt did before issue 15: the lock files are switched off in the workers);
- shared folder, locks: the default: a worker waits for the entries another one is computing.

Backbone passes per photo come from the caches' own counts of computed entries, summed over the two
workers and this process (the refit); each mode starts with empty caches. All three run in this
process, one after the other, on the same cluster.

    python benchmarks/bench_dask_cache.py [--size 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from joblib import parallel_config
from sklearn.model_selection import GridSearchCV, StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import CifarResNet, checkpoint_path  # noqa: E402
from benchmarks.finetune_transfer import image_folder  # noqa: E402
from skadapt import PretrainedFineTuner  # noqa: E402
from skadapt.finetune import _embedding_cache  # noqa: E402

HEAD_C = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]


def reset(cache_dir: str | None, locks: bool) -> None:
    """In a process: empty caches, zeroed counts, the lock files on or off."""
    cls = _embedding_cache.EmbeddingCache
    if not hasattr(cls, "_with_locks"):
        cls._with_locks = cls.compute_missing
    cls.compute_missing = cls._with_locks if locks else _without_locks
    cache = _embedding_cache.shared_cache(cache_dir)
    cache.clear()
    cache.reset_stats()


def _without_locks(self, keys, compute, *, chunk_size=1024):
    return self._compute_and_put(list(dict.fromkeys(keys)), compute)


def computed(cache_dir: str | None) -> int:
    return _embedding_cache.shared_cache(cache_dir).stats.computed


def run_mode(client, X, y, size: int, cache_dir: str | None, locks: bool) -> tuple[float, float]:
    client.run(reset, cache_dir, locks)
    reset(cache_dir, locks)
    clf = PretrainedFineTuner(CifarResNet(20), weights=str(checkpoint_path(20)), freeze="backbone",
                              image_size=size, augment=False, cache_dir=cache_dir, device="cpu",
                              random_state=0)
    search = GridSearchCV(clf, {"head_C": HEAD_C}, cv=StratifiedKFold(5, shuffle=True,
                                                                      random_state=0), n_jobs=-1)
    start = time.perf_counter()
    with parallel_config(backend="dask"):
        search.fit(X, y)
    seconds = time.perf_counter() - start
    total = sum(client.run(computed, cache_dir).values()) + computed(cache_dir)
    return total / len(X), seconds, search.cv_results_["mean_test_score"]


def main(argv=None) -> None:
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    X, y = image_folder("train")
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(torch.set_num_threads, args.threads)
        client.run(reset, None, True)  # workers import skadapt and torch before timing
        with tempfile.TemporaryDirectory() as folder:
            modes = [("per-process memory (no cache_dir)", None, True),
                     ("shared cache_dir, no locks", str(Path(folder) / "a"), False),
                     ("shared cache_dir, locks (default)", str(Path(folder) / "b"), True)]
            for label, cache_dir, locks in modes:
                passes, seconds, scores = run_mode(client, X, y, args.size, cache_dir, locks)
                rows.append((label, passes, seconds, scores))
                print(f"done: {label}", file=sys.stderr)
    print(f"\nGridSearchCV, 5 folds x {len(HEAD_C)} head_C + refit (41 fits), frozen ResNet20 "
          f"(CIFAR-10), {len(X)} ants/bees photos (paths) at {args.size} px, LocalCluster of 2 "
          f"worker processes x 1 thread, torch threads {args.threads}\n")
    print("| caches | backbone passes per photo | vs per-process | search time (s) |")
    print("| --- | --- | --- | --- |")
    for label, passes, seconds, _ in rows:
        print(f"| {label} | {passes:.2f} | {passes / rows[0][1]:.2f}x | {seconds:.1f} |")
    same = all(np.array_equal(scores, rows[0][3]) for *_, scores in rows)
    print(f"\nsame mean CV accuracy over the grid in every mode: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
