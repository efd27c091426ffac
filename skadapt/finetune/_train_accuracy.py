"""``train_acc``: a classifier's accuracy on its training batches, as they were trained.

Like skorch's ``train_loss``, it is read from the batches the optimizer saw (with augmentation,
dropout and the weights of that moment), not from a second pass over the training data, so it
costs nothing but an ``argmax`` per batch. A gap between ``train_acc`` and ``valid_acc`` in the
history (and in the report's training curves) is the first sign of overfitting.
"""

from __future__ import annotations

from skorch.callbacks import Callback

__all__ = ["TrainingAccuracy"]


class TrainingAccuracy(Callback):
    """Record ``train_acc`` in each epoch's history row: the share of training samples whose
    predicted class (the ``argmax`` of the network's 2-D output) was their label.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt import PretrainedFineTuner
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    >>> X = np.random.default_rng(0).normal(size=(16, 3, 2, 2)).astype("float32")
    >>> clf = PretrainedFineTuner(net, freeze="none", max_epochs=2, validation_fraction=None,
    ...                           batch_size=8, verbose=0).fit(X, np.arange(16) % 2)
    >>> 0.0 <= clf.history[-1, "train_acc"] <= 1.0
    True
    """

    def on_epoch_begin(self, net, **kwargs):
        self.correct_, self.seen_ = 0, 0

    def on_batch_end(self, net, batch=None, training=False, y_pred=None, **kwargs):
        target = batch[1]["target"] if isinstance(batch[1], dict) else batch[1]
        if training and getattr(y_pred, "ndim", 0) == 2 and not target.is_floating_point():
            self.correct_ += int((y_pred.argmax(1).cpu() == target.cpu()).sum())
            self.seen_ += len(target)

    def on_epoch_end(self, net, **kwargs):
        if self.seen_:
            net.history.record("train_acc", self.correct_ / self.seen_)
