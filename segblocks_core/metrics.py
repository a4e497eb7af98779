"""Segmentation accuracy: confusion matrix, IoU and pixel accuracy (Cityscapes definition).

The confusion matrix counts pixels as ``conf[target, prediction]`` over a whole data set;
pixels whose target is ``ignore_index`` are left out. Per-class IoU is
``TP / (TP + FP + FN)``; mIoU is the mean over the classes with a non-zero union (a class
that is neither in the ground truth nor predicted anywhere in the set has no IoU and is
left out, as the Cityscapes evaluation script does with its NaN scores). All scores are
percentages.

``confusion_matrix`` accepts numpy arrays or torch tensors (on any device; the counting
runs with ``bincount`` where the data lives), so the training loop and the bag evaluation
tool accumulate the same way.
"""

from __future__ import annotations

from typing import Union

import numpy as np

__all__ = ["confusion_matrix", "miou", "per_class_iou", "pixel_accuracy"]

ArrayLike = Union[np.ndarray, "torch.Tensor"]  # noqa: F821 - torch is optional here


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def confusion_matrix(pred: ArrayLike, target: ArrayLike, num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    """Pixel counts ``conf[t, p]`` of target class ``t`` predicted as ``p``.

    Args:
        pred (array[...] integer): predicted class ids, same shape as ``target``.
        target (array[...] integer): ground-truth class ids; ``ignore_index`` pixels are
            not counted.
        num_classes: K.
        ignore_index: target value to leave out (None counts every pixel).

    Returns:
        np.ndarray[K, K] int64.

    Raises:
        ValueError: shapes differ, or a counted pixel has a target or prediction outside
            ``[0, K)`` (the message lists the offending ids).
    """
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    k = int(num_classes)
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if _is_tensor(pred) or _is_tensor(target):
        import torch

        p = torch.as_tensor(pred).reshape(-1).long()
        t = torch.as_tensor(target, device=p.device).reshape(-1).long()
        if ignore_index is not None:
            keep = t != ignore_index
            p, t = p[keep], t[keep]
        bad = (t < 0) | (t >= k) | (p < 0) | (p >= k)
        if bool(bad.any()):
            _raise_bad(p[bad].cpu().numpy(), t[bad].cpu().numpy(), k, ignore_index)
        counts = torch.bincount(t * k + p, minlength=k * k)
        return counts.reshape(k, k).cpu().numpy().astype(np.int64)
    p = np.asarray(pred).reshape(-1).astype(np.int64, copy=False)
    t = np.asarray(target).reshape(-1).astype(np.int64, copy=False)
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    bad = (t < 0) | (t >= k) | (p < 0) | (p >= k)
    if bad.any():
        _raise_bad(p[bad], t[bad], k, ignore_index)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _raise_bad(p: np.ndarray, t: np.ndarray, k: int, ignore_index) -> None:
    bad_t = sorted(set(np.unique(t[(t < 0) | (t >= k)]).tolist()))
    bad_p = sorted(set(np.unique(p[(p < 0) | (p >= k)]).tolist()))
    parts = []
    if bad_t:
        parts.append(f"target ids {bad_t[:10]}")
    if bad_p:
        parts.append(f"predicted ids {bad_p[:10]}")
    raise ValueError(f"{' and '.join(parts)} outside [0, {k}) (ignore_index={ignore_index}); "
                     f"check num_classes and the label encoding")


def _check_conf(conf) -> np.ndarray:
    conf = np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be square [K, K], got shape {conf.shape}")
    return conf.astype(np.float64)


def per_class_iou(conf: np.ndarray) -> np.ndarray:
    """IoU per class in percent, ``[K]`` float64; NaN for classes with an empty union."""
    c = _check_conf(conf)
    tp = np.diag(c)
    union = c.sum(0) + c.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, 100.0 * tp / union, np.nan)


def miou(conf: np.ndarray) -> float:
    """Mean IoU in percent over the classes with a non-zero union (NaN if there is none)."""
    iou = per_class_iou(conf)
    valid = ~np.isnan(iou)
    return float(iou[valid].mean()) if valid.any() else float("nan")


def pixel_accuracy(conf: np.ndarray) -> float:
    """Correct pixels / counted pixels in percent (NaN if nothing was counted)."""
    c = _check_conf(conf)
    total = c.sum()
    return float(100.0 * np.trace(c) / total) if total > 0 else float("nan")
