"""Frozen-backbone grid search: backbone features cached once vs recomputed every epoch, fold and point.

``GridSearchCV`` (5 stratified folds x 8 head settings: 4 learning rates x 2 weight decays, then a
refit: 41 fits) of ``PretrainedFineTuner(freeze="backbone")`` on a frozen CIFAR-10 ResNet20, on the
ants-vs-bees training photos given as image paths at 32 px, no augmentation:

- uncached: ``feature_cache=False, image_cache_mb=0``, plain skorch behaviour: every epoch of every
  fit decodes every photo and runs the backbone on it;
- cached: the default ``feature_cache="auto"``: the fine-tuner runs the backbone once per photo for
  the whole search (features cached by content) and trains only the head;
- hand-written: plain PyTorch and torchvision, no skadapt: the backbone's features computed once
  (the same preprocessing: resize, center crop, ImageNet normalization), then the same grid over
  the same folds, each point a plain loop (AdamW, cross-entropy, shuffled batches) over a new
  ``nn.Linear`` head, scored by accuracy, and the refit: what skadapt's cached search should cost.

skadapt's searches train the head by gradient steps (``head_solver="gradient"``): the grid is over
the optimizer's learning rate and weight decay, which the default convex head (solved exactly,
since issue 12) would ignore. Both resolve the network through the same per-process memo (issue 15:
the checkpoint is read once, each fit gets a fresh copy).

All three run in this process, one after the other, after an untimed warm-up fit (caches off, on
other photos) so that none pays the process's first calls; the table gives their times, the
ratios to the uncached search (target: >= 50x) and each search's best score and parameters
(target: the same for cached and uncached), then each side's CPU time (one thread: unlike the wall
time, not lengthened by other work on a shared machine).

    python benchmarks/bench_grid_cache.py [--epochs 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from threadpoolctl import threadpool_limits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import CifarResNet, checkpoint_path  # noqa: E402
from benchmarks.finetune_transfer import image_folder  # noqa: E402
from skadapt import PretrainedFineTuner  # noqa: E402
from skadapt.finetune._embedding_cache import shared_cache  # noqa: E402
from skadapt.networks._memo import clear_network_memo, network_memo_info  # noqa: E402

LEARNING_RATES = [1e-3, 3e-3, 1e-2, 3e-2]
WEIGHT_DECAYS = [0.0, 0.1]


def head_settings(epochs: int, batch_size: int) -> dict:
    return dict(lr_schedule="constant", warmup=0.0, max_epochs=epochs, batch_size=batch_size,
                validation_fraction=None, num_workers=0, random_state=0)


def search(epochs: int, batch_size: int, size: int, cached: bool) -> GridSearchCV:
    clf = PretrainedFineTuner(CifarResNet(20), weights=str(checkpoint_path(20)),
                              freeze="backbone", image_size=size, augment=False,
                              feature_cache="auto" if cached else False,
                              image_cache_mb=1024 if cached else 0, head_solver="gradient",
                              **head_settings(epochs, batch_size))
    grid = {"lr": LEARNING_RATES, "optimizer__weight_decay": WEIGHT_DECAYS}
    return GridSearchCV(clf, grid, cv=StratifiedKFold(5, shuffle=True, random_state=0))


def hand_written_search(X, y, epochs: int, batch_size: int, size: int, seed: int = 0) -> dict:
    """The cached search by hand: features once, then a plain head loop per fold and setting."""
    backbone = CifarResNet(20)
    saved = torch.load(checkpoint_path(20), map_location="cpu")["state_dict"]
    backbone.load_state_dict({name.removeprefix("module."): value for name, value in saved.items()})
    backbone.linear = nn.Identity()
    backbone.eval()
    preprocess = transforms.Compose([
        transforms.Resize(round(size / 0.875)), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    with torch.no_grad():
        features = torch.cat([
            backbone(torch.stack([preprocess(Image.open(path).convert("RGB"))
                                  for path in X[start:start + 64]]))
            for start in range(0, len(X), 64)])
    classes, target = np.unique(y, return_inverse=True)
    target = torch.from_numpy(target)

    def train(rows: np.ndarray, lr: float, weight_decay: float) -> nn.Linear:
        torch.manual_seed(seed)
        head = nn.Linear(features.shape[1], len(classes))
        optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
        loader = DataLoader(TensorDataset(features[rows], target[rows]),
                            batch_size=batch_size, shuffle=True)
        for _ in range(epochs):
            for inputs, labels in loader:
                optimizer.zero_grad()
                F.cross_entropy(head(inputs), labels).backward()
                optimizer.step()
        return head

    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    scores = {}
    for lr in LEARNING_RATES:
        for weight_decay in WEIGHT_DECAYS:
            accuracy = []
            for train_rows, test_rows in folds:
                head = train(train_rows, lr, weight_decay)
                with torch.no_grad():
                    predicted = head(features[test_rows]).argmax(1)
                accuracy.append(float((predicted == target[test_rows]).float().mean()))
            scores[lr, weight_decay] = float(np.mean(accuracy))
    best = max(scores, key=scores.get)  # the first of equal scores, as GridSearchCV
    train(np.arange(len(X)), *best)  # the refit
    return {"best_score": scores[best], "best": best}


def warm_up(size: int) -> None:
    """One untimed fit on four photos of the validation split, caches off, then the memo cleared:
    imports and first calls (PIL's decoder, torchvision's transforms, skorch) are then paid by no
    timed search, which all start equally warm and with empty caches."""
    X, y = image_folder("val")
    PretrainedFineTuner(CifarResNet(20), weights=str(checkpoint_path(20)), freeze="backbone",
                        image_size=size, augment=False, feature_cache=False, image_cache_mb=0,
                        **head_settings(1, 4)).fit(X[:2] + X[-2:], np.r_[y[:2], y[-2:]])
    clear_network_memo()


def limit_threads(threads: int) -> None:
    """Every thread pool of the process to ``threads``: torch's, and BLAS's and OpenMP's (numpy,
    scipy, sklearn), called after the warm-up has loaded them all: ``threadpool_limits`` only
    reaches the libraries loaded when it is called. Scipy's OpenBLAS (loaded by the first
    LogisticRegression fit) and sklearn's OpenMP left at two threads on the shared 2-core machine
    made each LogisticRegression fit of the text benchmark 60-90 ms instead of 3-5 ms."""
    torch.set_num_threads(threads)
    threadpool_limits(threads)


def timed_fit(search: GridSearchCV, X, y) -> float:
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    X, y = image_folder("train")
    warm_up(args.size)
    limit_threads(args.threads)  # again: the warm-up loaded more libraries

    cpu = {}  # process CPU time of each side: one thread, so what other work on the machine
    start_cpu = time.process_time()  # (or the host) does not add to it, unlike the wall time
    cached = search(args.epochs, args.batch_size, args.size, cached=True)
    cached_s = timed_fit(cached, X, y)
    cpu["cached"] = time.process_time() - start_cpu
    stats = shared_cache().stats
    memo = network_memo_info()
    print(f"done: cached ({stats.misses} backbone passes, {stats.hits} cache hits; "
          f"{cached.best_estimator_.training_path_}; network memo {memo['hits']} hits, "
          f"{memo['misses']} misses)", file=sys.stderr)
    start, start_cpu = time.perf_counter(), time.process_time()
    by_hand = hand_written_search(X, y, args.epochs, args.batch_size, args.size)
    by_hand_s = time.perf_counter() - start
    cpu["hand-written"] = time.process_time() - start_cpu
    print("done: hand-written", file=sys.stderr)
    start_cpu = time.process_time()
    uncached = search(args.epochs, args.batch_size, args.size, cached=False)
    uncached_s = timed_fit(uncached, X, y)
    cpu["uncached"] = time.process_time() - start_cpu
    print("done: uncached", file=sys.stderr)

    def best(search):
        params = search.best_params_
        return (f"{search.best_score_:.4f}",
                f"lr={params['lr']:g}, wd={params['optimizer__weight_decay']:g}")

    n_fits = 5 * len(LEARNING_RATES) * len(WEIGHT_DECAYS) + 1
    print(f"\nGridSearchCV, 5 folds x {len(LEARNING_RATES) * len(WEIGHT_DECAYS)} head settings "
          f"+ refit ({n_fits} fits), {args.epochs} epochs each, frozen ResNet20 (CIFAR-10), "
          f"{len(X)} ants/bees photos (paths) at {args.size} px, torch and BLAS threads "
          f"{torch.get_num_threads()}\n")
    print("| search | time (s) | speed-up | best CV accuracy | best setting |")
    print("| --- | --- | --- | --- | --- |")
    for label, fitted, seconds in (("uncached (no caches, plain skorch)", uncached,
                                    uncached_s), ("cached (feature_cache='auto')", cached, cached_s)):
        score, setting = best(fitted)
        print(f"| {label} | {seconds:.1f} | {uncached_s / seconds:.1f}x | {score} | {setting} |")
    lr, weight_decay = by_hand["best"]
    print(f"| hand-written (features once, plain PyTorch head loops) | {by_hand_s:.1f} | "
          f"{uncached_s / by_hand_s:.1f}x | {by_hand['best_score']:.4f} | "
          f"lr={lr:g}, wd={weight_decay:g} |")
    print(f"\nskadapt's cached search takes {cached_s / by_hand_s:.2f}x the hand-written one's time")
    print("\nCPU time of the process (s): " + ", ".join(
        f"{side} {seconds:.1f} ({cpu['uncached'] / seconds:.1f}x)" for side, seconds in cpu.items()))
    same = (np.isclose(cached.best_score_, uncached.best_score_)
            and cached.best_params_ == uncached.best_params_)
    gap = np.abs(cached.cv_results_["mean_test_score"] - uncached.cv_results_["mean_test_score"])
    print(f"\nsame best score and setting: {'yes' if same else 'NO'}; largest difference in mean "
          f"CV accuracy over the grid: {gap.max():.4f}")


if __name__ == "__main__":
    main()
