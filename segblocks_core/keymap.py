"""Load ``state_dict``s saved by the original SwiftNet and SegBlocks code.

Our SwiftNet already uses the original module names (``backbone.layer1.0.conv1``,
``backbone.spp.spp.spp_bn.norm``, ``backbone.upsample.0.blend_conv.conv``,
``logits.conv``), so mapping is mostly unwrapping:

* wrappers: ``module.`` (DataParallel / DistributedDataParallel), ``_orig_mod.``
  (``torch.compile``), ``model.`` and ``net.`` (the SegBlocks ``SegBlocksModel(net=...)``);
  checkpoint dicts that hold the weights under ``state_dict`` / ``model`` / ``net``;
* SegBlocks' SwiftNet (thomasverelst/segblocks-segmentation-pytorch) keeps ``spp`` and
  ``upsample`` next to ``backbone`` instead of inside it: moved to ``backbone.spp`` /
  ``backbone.upsample``; its learned policy (``policy.*``) has no counterpart here and is
  dropped;
* SwiftNet (orsic/swiftnet) stores its input normalisation as buffers
  ``backbone.img_mean`` / ``backbone.img_std`` (0-255 units, Cityscapes statistics) and
  expects 0-255 input; our models take ImageNet-normalised input
  (:func:`segblocks_core.engine.normalize`). The difference is an affine map per input
  channel, folded exactly into ``conv1`` (scale) and ``bn1.running_mean`` (offset), so the
  converted network gives the original's outputs on our input (away from the 3-pixel
  image border, where zero padding means a different colour in the two conventions);
* SegBlocks trained with Cityscapes mean/std on 0-1 input in its data pipeline (not in the
  weights); that normalisation is folded the same way (pass ``input_mean``/``input_std``
  to override it);
* BatchNorm ``num_batches_tracked`` counters missing from old checkpoints are set to 0;
* torchvision ImageNet ResNets (``conv1``, ``layer1``..., ``fc``) map onto the backbone
  with :func:`map_torchvision_backbone`.

Anything else is left as it is, and :func:`load_original_state_dict` raises
:class:`~segblocks_core.checkpoint.CheckpointError` listing the missing and unexpected
keys.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

import torch
from torch import nn

from .checkpoint import CheckpointError, load_state_dict_strict
from .engine import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["map_original_state_dict", "map_torchvision_backbone", "load_original_state_dict",
           "read_state_dict_file", "CITYSCAPES_MEAN", "CITYSCAPES_STD"]

log = logging.getLogger("segblocks_core.keymap")

#: Cityscapes RGB statistics used by SwiftNet and SegBlocks (0-1 units)
CITYSCAPES_MEAN = (73.1584 / 255, 82.9090 / 255, 72.3924 / 255)
CITYSCAPES_STD = (44.9149 / 255, 46.1529 / 255, 45.3192 / 255)

_WRAPPERS = ("module.", "_orig_mod.", "model.", "net.")
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_DROPPED_PREFIXES = ("policy.", "criterion.", "loss.", "backbone.fc.")


def _unwrap_container(sd: dict) -> dict:
    """``{"state_dict": {...}, "optimizer": ...}`` and friends -> the tensor dict."""
    for _ in range(3):
        if all(isinstance(v, torch.Tensor) for v in sd.values()):
            return sd
        for key in _CONTAINER_KEYS:
            inner = sd.get(key)
            if isinstance(inner, dict) and inner:
                sd = inner
                break
        else:
            break
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError("no tensors found: not a state_dict (or a dict holding one under "
                              f"one of {list(_CONTAINER_KEYS)})")
    return tensors


def _strip_wrappers(sd: dict) -> dict:
    out = {}
    for key, value in sd.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPERS:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    changed = True
        out[key] = value
    return out


def fold_input_normalization(sd: dict, source_mean: Sequence[float], source_std: Sequence[float],
                             target_mean: Sequence[float] = IMAGENET_MEAN,
                             target_std: Sequence[float] = IMAGENET_STD,
                             conv: str = "backbone.conv1.weight",
                             bn_mean: str = "backbone.bn1.running_mean") -> dict:
    """Make weights trained on ``(rgb/255 - source_mean)/source_std`` input take
    ``(rgb/255 - target_mean)/target_std`` input (0-1 units, RGB).

    With ``x_src = a * x_tgt + b`` per channel, ``conv(x_src) = conv_a(x_tgt) + c`` where
    ``conv_a`` has its input channels scaled by ``a`` and ``c[o] = sum W[o, i] * b[i]``;
    the constant moves into the following BatchNorm's running mean (the stem conv has no
    bias).
    """
    if conv not in sd or bn_mean not in sd:
        raise CheckpointError(f"cannot fold the input normalisation: {conv!r} or {bn_mean!r} missing")
    w = sd[conv].double()
    s_m, s_s = torch.tensor(source_mean, dtype=torch.float64), torch.tensor(source_std, dtype=torch.float64)
    t_m, t_s = torch.tensor(target_mean, dtype=torch.float64), torch.tensor(target_std, dtype=torch.float64)
    if w.shape[1] != len(s_m):
        raise CheckpointError(f"{conv} has {w.shape[1]} input channels, normalisation has {len(s_m)}")
    a = t_s / s_s
    b = (t_m - s_m) / s_s
    out = dict(sd)
    out[conv] = (w * a.view(1, -1, 1, 1)).to(sd[conv].dtype)
    const = (w.sum((2, 3)) * b.view(1, -1)).sum(1)
    out[bn_mean] = (sd[bn_mean].double() - const).to(sd[bn_mean].dtype)
    return out


def map_original_state_dict(state_dict: dict, input_mean: Optional[Sequence[float]] = None,
                            input_std: Optional[Sequence[float]] = None) -> dict[str, torch.Tensor]:
    """Map a SwiftNet / SegBlocks ``state_dict`` (or a checkpoint dict holding one) onto
    :class:`segblocks_core.models.SwiftNet`'s names and input normalisation.

    Args:
        state_dict: the loaded dict.
        input_mean, input_std: the normalisation the weights were trained with (0-1 units,
            RGB) when it is not stored in them; default: the one the detected source used
            (orsic/swiftnet: its buffers; SegBlocks: Cityscapes statistics; otherwise ours,
            i.e. nothing to fold).

    Returns:
        A new dict of tensors; pass it to
        :func:`segblocks_core.checkpoint.load_state_dict_strict`.
    """
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"expected a dict, got {type(state_dict).__name__}")
    sd = _strip_wrappers(_unwrap_container(state_dict))
    dropped = [k for k in sd if k.startswith(_DROPPED_PREFIXES)]
    for k in dropped:
        del sd[k]
    if dropped:
        log.info("dropped %d keys without a counterpart (%s...)", len(dropped), dropped[0])

    source_norm = None
    # SegBlocks SwiftNet: spp/upsample beside the backbone
    if any(k.startswith(("spp.", "upsample.")) for k in sd) and any(k.startswith("backbone.") for k in sd):
        sd = {("backbone." + k if k.startswith(("spp.", "upsample.")) else k): v for k, v in sd.items()}
        source_norm = (CITYSCAPES_MEAN, CITYSCAPES_STD)
    # orsic/swiftnet: normalisation buffers inside the backbone (0-255 units)
    if "backbone.img_mean" in sd and "backbone.img_std" in sd:
        scale = float(sd.pop("backbone.img_scale").reshape(-1)[0]) if "backbone.img_scale" in sd else 1.0
        mean = sd.pop("backbone.img_mean").reshape(-1).double() * scale / 255
        std = sd.pop("backbone.img_std").reshape(-1).double() * scale / 255
        source_norm = (mean.tolist(), std.tolist())
    if input_mean is not None or input_std is not None:
        if input_mean is None or input_std is None:
            raise ValueError("give both input_mean and input_std, or neither")
        source_norm = (tuple(input_mean), tuple(input_std))
    if source_norm is not None:
        mean, std = source_norm
        if any(abs(m - t) > 1e-6 for m, t in zip(mean, IMAGENET_MEAN)) or \
                any(abs(s - t) > 1e-6 for s, t in zip(std, IMAGENET_STD)):
            sd = fold_input_normalization(sd, mean, std)

    # counters missing from checkpoints older than PyTorch 0.4.1
    for key in list(sd):
        if key.endswith(".running_mean"):
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            if counter not in sd:
                sd[counter] = torch.tensor(0, dtype=torch.long)
    return sd


def map_torchvision_backbone(state_dict: dict) -> dict[str, torch.Tensor]:
    """torchvision ResNet (ImageNet) ``state_dict`` -> ``backbone.*`` keys, ``fc`` dropped.

    torchvision's ImageNet normalisation is ours, so nothing is folded. Load the result with
    ``model.load_state_dict(sd, strict=False)`` and check that only decoder keys are
    missing (``segblocks-train --init-backbone`` does this).
    """
    sd = _strip_wrappers(_unwrap_container(state_dict))
    return {("backbone." + k if not k.startswith("backbone.") else k): v
            for k, v in sd.items() if not k.startswith(("fc.", "backbone.fc."))}


def read_state_dict_file(path: str, trust_pickle: bool = False) -> dict:
    """``torch.load`` a weights file on the CPU.

    Files written by other training code often pickle configuration objects next to the
    weights, which ``weights_only`` loading refuses; they are only unpickled with
    ``trust_pickle=True`` (unpickling runs code from the file: use it for files you trust).
    """
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"weights file {path!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many kinds
        if not trust_pickle:
            raise CheckpointError(
                f"{path!r} holds Python objects besides tensors and was not unpickled ({exc}); "
                f"if you trust the file, allow it (segblocks-train --trust-checkpoint)") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot read {path!r}: {exc}") from exc


def load_original_state_dict(model: nn.Module, state_dict: dict, source: str = "state_dict",
                             input_mean: Optional[Sequence[float]] = None,
                             input_std: Optional[Sequence[float]] = None) -> None:
    """Map ``state_dict`` with :func:`map_original_state_dict` and load it strictly.

    Raises:
        CheckpointError: listing missing keys, unexpected keys and shape mismatches.
    """
    mapped = map_original_state_dict(state_dict, input_mean, input_std)
    own = model.state_dict()
    mapped = {k: (v.to(own[k].dtype) if k in own and v.is_floating_point() else v) for k, v in mapped.items()}
    load_state_dict_strict(model, mapped, source)
