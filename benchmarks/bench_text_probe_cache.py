"""Linear probe on frozen MiniLM sentence embeddings: embedding cache vs re-embedding every fit.

``GridSearchCV`` (5 stratified folds x 8 values of logistic regression's ``C``, then a refit: 41
fits) of ``make_pipeline(PretrainedFeatureExtractor(MiniLM), LogisticRegression())`` on review
sentences of one site of ``../shared/data/sentiment_labelled_sentences``:

- uncached: ``PretrainedFeatureExtractor(feature_cache=False)``: every fit embeds its training sentences
  and every scoring its test sentences, so the encoder runs 41 times over the data;
- cached: the default ``feature_cache="auto"``: each distinct sentence is embedded once for the whole
  search;
- hand-written: transformers and sklearn, no skadapt: every sentence embedded once (MiniLM's
  mean-pooled token states, as ``FrozenEmbeddings`` in ``text_domains.py``), then the same
  ``GridSearchCV`` of ``LogisticRegression`` on the array: what the cached search should cost.

All three run in this process, one after the other (the cached search first, on an empty cache),
after an untimed warm-up on four sentences of another site (caches off, the memo cleared after),
so that none pays the process's imports and first calls; the table gives their times, the ratios
to the uncached search and each search's best score and ``C`` (target: the same). skadapt's
searches load MiniLM through the per-process network memo (issue 15: loaded and hashed once; the
extractors share it read-only).

    python benchmarks/bench_text_probe_cache.py [--site amazon] [--sentences 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_grid_cache import limit_threads, timed_fit  # noqa: E402
from benchmarks.text_domains import SITES, FrozenEmbeddings, load_site, minilm_path  # noqa: E402
from skadapt import PretrainedFeatureExtractor  # noqa: E402
from skadapt.finetune._embedding_cache import shared_cache  # noqa: E402
from skadapt.networks._memo import clear_network_memo, network_memo_info  # noqa: E402

C_VALUES = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]


def search(cached: bool) -> GridSearchCV:
    probe = make_pipeline(PretrainedFeatureExtractor(minilm_path(), max_length=64,
                                                     feature_cache="auto" if cached else False),
                          LogisticRegression(max_iter=2000))
    return GridSearchCV(probe, {"logisticregression__C": C_VALUES},
                        cv=StratifiedKFold(5, shuffle=True, random_state=0))


def hand_written_search(X, y) -> tuple[GridSearchCV, float]:
    """Every sentence embedded once by hand, then sklearn's search on the array; also returns the
    time of the search alone (41 LogisticRegression fits and their scoring, which every side pays)."""
    features = FrozenEmbeddings(max_length=64)(list(X))
    start = time.perf_counter()
    fitted = GridSearchCV(LogisticRegression(max_iter=2000), {"C": C_VALUES},
                          cv=StratifiedKFold(5, shuffle=True, random_state=0)).fit(features, y)
    return fitted, time.perf_counter() - start


def warm_up(site: str) -> None:
    """Four sentences of another site embedded untimed, caches off, then the memo cleared: the
    first calls of tokenizers and torch are paid by no timed search."""
    other = next(name for name in SITES if name != site)
    texts, y = load_site(other)
    features = PretrainedFeatureExtractor(minilm_path(), max_length=64,
                                          feature_cache=False).fit_transform(
        np.asarray(texts[:4], dtype=object))
    LogisticRegression().fit(features, [0, 1, 0, 1])  # loads scipy's solvers and their BLAS
    clear_network_memo()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="amazon", choices=list(SITES))
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    texts, y = load_site(args.site)
    X, y = np.asarray(texts[: args.sentences], dtype=object), y[: args.sentences]
    warm_up(args.site)
    limit_threads(args.threads)  # again: the warm-up loaded more libraries

    cached = search(cached=True)
    cached_s = timed_fit(cached, X, y)
    stats = shared_cache().stats
    memo = network_memo_info()
    print(f"done: cached ({stats.misses} sentences embedded, {stats.hits} cache hits; network "
          f"memo {memo['hits']} hits, {memo['misses']} misses)", file=sys.stderr)
    start = time.perf_counter()
    by_hand, probes_s = hand_written_search(X, y)
    by_hand_s = time.perf_counter() - start
    print("done: hand-written", file=sys.stderr)
    uncached = search(cached=False)
    uncached_s = timed_fit(uncached, X, y)
    print("done: uncached", file=sys.stderr)

    n_fits = 5 * len(C_VALUES) + 1
    print(f"\nGridSearchCV, 5 folds x {len(C_VALUES)} values of C + refit ({n_fits} fits), "
          f"frozen MiniLM-L6 embeddings + logistic regression, {len(X)} {args.site} sentences, "
          f"max_length 64, torch and BLAS threads {torch.get_num_threads()}\n")
    print("| search | time (s) | speed-up | best CV accuracy | best C |")
    print("| --- | --- | --- | --- | --- |")
    for label, fitted, seconds in (("uncached (feature_cache=False)", uncached, uncached_s),
                                   ("cached (default)", cached, cached_s)):
        best_c = fitted.best_params_["logisticregression__C"]
        print(f"| {label} | {seconds:.1f} | {uncached_s / seconds:.1f}x | "
              f"{fitted.best_score_:.4f} | {best_c:g} |")
    print(f"| hand-written (embedded once, LogisticRegression on the array) | {by_hand_s:.1f} | "
          f"{uncached_s / by_hand_s:.1f}x | {by_hand.best_score_:.4f} | "
          f"{by_hand.best_params_['C']:g} |")
    print(f"\nskadapt's cached search takes {cached_s / by_hand_s:.2f}x the hand-written one's time")
    print(f"\nthe hand-written search: embedding once {by_hand_s - probes_s:.1f} s, then the "
          f"{n_fits} LogisticRegression fits and scorings {probes_s:.1f} s, which every side pays "
          f"(the uncached one re-embeds {n_fits} times): its {uncached_s / by_hand_s:.1f}x is "
          "the ceiling of this benchmark")
    gap = np.abs(cached.cv_results_["mean_test_score"] - uncached.cv_results_["mean_test_score"])
    print(f"\nlargest difference in mean CV accuracy over the grid: {gap.max():.4f}")


if __name__ == "__main__":
    main()
