"""Loading and saving model checkpoints.

A checkpoint is a ``torch.save``d dict ``{"model": name, "num_classes": K,
"state_dict": {...}, ...}`` (extra keys such as ``class_names`` or training metadata are
kept) or a plain ``state_dict``. Loading checks the architecture and reports missing and
unexpected keys instead of silently ignoring them.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import torch
from torch import nn

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint", "load_state_dict_strict",
           "default_checkpoint", "RANDOM_WEIGHTS"]

#: checkpoint value that asks for random weights explicitly (tests, speed measurements)
RANDOM_WEIGHTS = "random"

_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
_SHIPPED = {("swiftnet_rn18", 19): "swiftnet_rn18_synthetic.pt"}


def default_checkpoint(model_name: str, num_classes: int) -> Optional[str]:
    """Path of the checkpoint shipped with the package for this model, if there is one."""
    name = _SHIPPED.get((model_name, num_classes))
    path = os.path.join(_WEIGHTS_DIR, name) if name else None
    return path if path and os.path.isfile(path) else None


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the model."""


def _shorten(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def read_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint file into ``{"state_dict": ..., maybe "model", "num_classes"...}``."""
    if not path or not os.path.isfile(path):
        raise CheckpointError(
            f"checkpoint {path!r} does not exist; give the path of a .pt file saved by "
            f"segblocks-train, or leave the checkpoint empty to use the shipped default"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling error means the same to users
        raise CheckpointError(f"cannot read checkpoint {path!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(data).__name__}, not a dict")
    if "state_dict" in data and isinstance(data["state_dict"], dict):
        return data
    if all(isinstance(v, torch.Tensor) for v in data.values()):
        return {"state_dict": data}
    raise CheckpointError(f"checkpoint {path!r} has no 'state_dict' and is not a state_dict")


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict`` that explains shape, missing and unexpected-key mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_shorten(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_shorten(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_shorten(shapes, 4)}")
        raise CheckpointError(f"{source} does not match the model ({'; '.join(parts)})")
    model.load_state_dict(state_dict)


def load_checkpoint(path: str, model: nn.Module, model_name: Optional[str] = None,
                    num_classes: Optional[int] = None) -> dict[str, Any]:
    """Load ``path`` into ``model``; check the recorded architecture if there is one.

    Returns the checkpoint's metadata (everything but the state_dict).
    """
    data = read_checkpoint(path)
    if model_name is not None and data.get("model") not in (None, model_name):
        raise CheckpointError(
            f"checkpoint {path!r} is for model {data['model']!r}, but {model_name!r} was "
            f"requested; set model: {data['model']}"
        )
    if num_classes is not None and data.get("num_classes") not in (None, num_classes):
        raise CheckpointError(
            f"checkpoint {path!r} has {data['num_classes']} classes, but num_classes is "
            f"{num_classes}; set num_classes: {data['num_classes']}"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    load_state_dict_strict(model, state, f"checkpoint {path!r}")
    return {k: v for k, v in data.items() if k != "state_dict"}


def save_checkpoint(path: str, model: nn.Module, model_name: str, num_classes: int,
                    half: bool = False, **metadata: Any) -> None:
    """Save ``{"model", "num_classes", "state_dict", **metadata}`` (fp16 weights if
    ``half``; BatchNorm counters stay integers)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save({"model": model_name, "num_classes": num_classes, "state_dict": state, **metadata}, tmp)
    os.replace(tmp, path)
