"""``segblocks-train``: train SwiftNet densely or fine-tune it in SegBlocks blocks.

Data comes from a Cityscapes-layout root (``--data``; real Cityscapes or generated with
``--generate``) or from scenes rendered on the fly (``--synthetic``: unlimited views,
validation on a held-out seed range). Training is iteration based: AdamW or SGD with a
linear warm-up and polynomial decay, cross-entropy ignoring 255, mixed precision
(bf16 or fp16 autocast) and channels-last on GPUs. ``--blocks --tau T`` runs every
forward pass through :class:`segblocks_core.SegBlocks` with the complexity policy's grid,
as at inference, so the network adapts to low-resolution blocks (BatchNorm then uses
joint statistics over both resolutions).

Outputs in ``--out``: ``last.pt`` and ``best.pt`` (model checkpoints for
:func:`segblocks_core.checkpoint.load_checkpoint`, with metadata), ``resume.pt``
(optimizer, scaler and counters for ``--resume``), ``log.jsonl`` and ``metrics.json``.
``--export-half PATH`` writes the best (else last) weights in fp16 for shipping.

Example: an eight-minute run on one H100 (1500 cached 1024x2048 frames rendered by 15
processes in about 95 s, then 300 s of training at about 22 it/s, the last 15% of it
interleaving SegBlocks steps at tau 0.3, then validation on 50 held-out scenes)::

    segblocks-train --synthetic --size 1024x2048 --cache-frames 1500 --crop 768 \\
        --scale 0.5,1.25 --batch-size 12 --workers 15 --max-iters 100000 --time-limit 300 \\
        --blocks-fraction 0.15 --tau 0.3 --val-images 50 --val-every 0 \\
        --out runs/rn18 --export-half swiftnet_rn18_synthetic.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .classes import IGNORE_INDEX, default_class_names
from .metrics import confusion_matrix, miou, per_class_iou, pixel_accuracy
from .models import build_model

__all__ = ["main", "build_parser", "poly_lr", "Trainer"]

log = logging.getLogger("segblocks_core.train")

#: first seed of the held-out validation scenes (training seeds stay below it)
VAL_SEED0 = 1_000_000


# ---------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    """``768`` -> (768, 768); ``512x1024`` -> (512, 1024)."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"size must be N or HxW with sides >= 8, got {text!r}")
    return parts[0], parts[1]


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX, got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"need 0 < MIN <= MAX, got {text!r}")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segblocks-train",
        description="Train SwiftNet (dense, or fine-tune in SegBlocks blocks) on Cityscapes-layout "
                    "data or on synthetic street scenes rendered on the fly.")
    d = p.add_argument_group("data")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="ROOT", help="Cityscapes-layout root (leftImg8bit/, gtFine/)")
    src.add_argument("--synthetic", action="store_true",
                     help="render training scenes on the fly; validate on held-out seeds")
    d.add_argument("--generate", type=int, default=0, metavar="N",
                   help="with --data: first render N synthetic training frames into ROOT (seeds 0..N-1)")
    d.add_argument("--generate-val", type=int, default=0, metavar="M",
                   help="with --data: first render M validation frames (seeds from --val-seed0)")
    d.add_argument("--size", type=_size, default=(1024, 2048), metavar="HxW",
                   help="frame size of generated / on-the-fly scenes (default 1024x2048)")
    d.add_argument("--train-split", default="train")
    d.add_argument("--val-split", default="val")
    d.add_argument("--train-scenes", type=int, default=VAL_SEED0,
                   help="--synthetic: train on seeds [0, N) (default %(default)s)")
    d.add_argument("--val-seed0", type=int, default=VAL_SEED0,
                   help="first held-out validation seed (default %(default)s)")
    d.add_argument("--val-images", type=int, default=50,
                   help="validation frames (synthetic: how many held-out seeds; data: at most this many, 0 = all)")
    d.add_argument("--crop", type=_size, default=(768, 768), metavar="S|HxW", help="training crop")
    d.add_argument("--scale", type=_range, default=(0.5, 1.5), metavar="MIN,MAX",
                   help="random scale range (default 0.5,1.5)")
    d.add_argument("--jitter", type=float, default=0.0, help="colour jitter amplitude (0 = off)")
    d.add_argument("--t-max", type=float, default=300.0,
                   help="--synthetic: random camera position along each scene's road, metres")
    d.add_argument("--cache-frames", type=int, default=0, metavar="N",
                   help="--synthetic: render N frames into memory first (all --workers) and train on "
                        "crops of them; 0 renders every sample on the fly (CPU-bound on fast GPUs)")
    d.add_argument("--workers", type=int, default=4, help="data loader processes")

    m = p.add_argument_group("model")
    m.add_argument("--model", default="swiftnet_rn18", help="swiftnet_rn18 or swiftnet_rn50")
    m.add_argument("--num-classes", type=int, default=19)
    m.add_argument("--init", metavar="PATH",
                   help="start from weights: a segblocks checkpoint or an original SwiftNet/SegBlocks state_dict")
    m.add_argument("--init-backbone", metavar="PATH", help="torchvision ImageNet ResNet weights for the backbone")
    m.add_argument("--trust-checkpoint", action="store_true",
                   help="allow unpickling --init files that hold Python objects (trusted files only)")

    o = p.add_argument_group("optimisation")
    o.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    o.add_argument("--lr", type=float, default=None, help="peak learning rate (adamw 1e-3, sgd 0.05)")
    o.add_argument("--weight-decay", type=float, default=None, help="(adamw 1e-4, sgd 1e-4)")
    o.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    o.add_argument("--max-iters", type=int, default=20000)
    o.add_argument("--warmup-iters", type=int, default=None, help="linear warm-up (default min(500, 5%%))")
    o.add_argument("--poly-power", type=float, default=0.9)
    o.add_argument("--batch-size", type=int, default=8)
    o.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto",
                   help="mixed precision on CUDA (auto: bf16 where supported); CPU runs fp32")
    o.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                   help="training time budget: the schedule ends at --max-iters or after this many "
                        "seconds of training, whichever comes first (then validate and save); 0 = none")
    o.add_argument("--compile", action="store_true", help="torch.compile the dense model")

    b = p.add_argument_group("SegBlocks fine-tuning")
    b.add_argument("--blocks", action="store_true",
                   help="forward through SegBlocks with the complexity policy (the whole run)")
    b.add_argument("--blocks-fraction", type=float, default=0.0, metavar="F",
                   help="fine-tune in blocks for the last fraction F of the schedule (0 = never, 1 = --blocks)")
    b.add_argument("--blocks-mix", type=float, default=0.5, metavar="P",
                   help="share of block steps in that phase, interleaved with dense steps so the same "
                        "weights stay good both ways (the dense baseline of segblocks-eval-bag); "
                        "--blocks uses 1 (default %(default)s)")
    b.add_argument("--tau", type=float, default=0.3, help="complexity threshold for --blocks")
    b.add_argument("--block-size", type=int, default=128)

    r = p.add_argument_group("run")
    r.add_argument("--out", default="runs/segblocks", help="output directory")
    r.add_argument("--resume", metavar="PATH", help="resume file (or the --out directory of an earlier run)")
    r.add_argument("--export-half", metavar="PATH", help="write the best (else last) weights as fp16 here")
    r.add_argument("--metrics-json", metavar="PATH", help="also write the final metrics here")
    r.add_argument("--val-every", type=int, default=1000, help="validate every N iterations (0 = only at the end)")
    r.add_argument("--log-every", type=int, default=50)
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    r.add_argument("--seed", type=int, default=0)
    return p


# ---------------------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------------------


def poly_lr(base_lr: float, progress: float, iteration: int = 0, warmup: int = 0,
            power: float = 0.9) -> float:
    """``base_lr * (1 - progress) ** power`` (progress in [0, 1] of the schedule), ramped up
    linearly over the first ``warmup`` iterations."""
    lr = base_lr * max(0.0, 1.0 - min(1.0, progress)) ** power
    if warmup > 0 and iteration < warmup:
        lr *= (iteration + 1) / warmup
    return lr


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BatchNorm parameters and biases."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(name: str, groups: list[dict], lr: float, momentum: float) -> torch.optim.Optimizer:
    """AdamW or Nesterov SGD, fused where this torch build supports it (several times
    faster on CPUs and GPUs than the per-parameter loop)."""
    for fused in (True, False):
        try:
            if name == "adamw":
                return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), fused=fused or None)
            return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True, fused=fused or None)
        except (RuntimeError, TypeError, ValueError):
            if not fused:
                raise
    raise AssertionError("unreachable")


def _amp_dtype(choice: str, device: torch.device) -> Optional[torch.dtype]:
    if device.type != "cuda" or choice == "off":
        return None
    if choice == "fp16":
        return torch.float16
    if choice == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _jitter(x: torch.Tensor, amount: float) -> torch.Tensor:
    """Random brightness, contrast and saturation per image of a normalised batch."""
    n = x.shape[0]
    b, c, s = ((1 + (torch.rand(3, n, 1, 1, 1, device=x.device) * 2 - 1) * amount))
    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * s
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * c + mean + (b - 1) * 2.0


def _cycle(loader: DataLoader) -> Iterator:
    epoch = 0
    while True:
        for batch in loader:
            yield batch
        epoch += 1


def _jsonable(args: argparse.Namespace) -> dict:
    out = {}
    for k, v in vars(args).items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


class Trainer:
    """The training run described by parsed ``segblocks-train`` arguments."""

    def __init__(self, args: argparse.Namespace):
        from .engine import resolve_device

        self.args = args
        self.device = resolve_device(args.device)
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        torch.manual_seed(args.seed)
        self.class_names = default_class_names(args.num_classes)
        self.model = build_model(args.model, args.num_classes)
        if args.init:
            self._load_init(args.init)
        if args.init_backbone:
            self._load_backbone(args.init_backbone)
        self.model.to(self.device)
        self.cuda = self.device.type == "cuda"
        self.amp_dtype = _amp_dtype(args.amp, self.device)
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            self.model.to(memory_format=torch.channels_last)
        self.segblocks = None
        self.policy = None
        if args.blocks:
            args.blocks_fraction, args.blocks_mix = 1.0, 1.0
        if not 0.0 <= args.blocks_fraction <= 1.0:
            raise ValueError(f"--blocks-fraction must be in [0, 1], got {args.blocks_fraction}")
        if not 0.0 < args.blocks_mix <= 1.0:
            raise ValueError(f"--blocks-mix must be in (0, 1], got {args.blocks_mix}")
        if args.blocks_fraction > 0:
            from .executor import SegBlocks
            from .policy import ComplexityPolicy

            self.segblocks = SegBlocks(self.model, block_size=args.block_size)
            self.policy = ComplexityPolicy(args.tau, args.block_size)
        self.forward_dense = self.model
        if args.compile:
            self.forward_dense = torch.compile(self.model)
        lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adamw" else 0.05)
        wd = args.weight_decay if args.weight_decay is not None else 1e-4
        self.base_lr = lr
        groups = _param_groups(self.model, wd)
        self.optimizer = _make_optimizer(args.optimizer, groups, lr, args.momentum)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.warmup = args.warmup_iters if args.warmup_iters is not None else min(500, args.max_iters // 20)
        self.iteration = 0
        self.seconds = 0.0              # training time of earlier runs (resume)
        self.best_miou = float("-inf")
        self.history: list[dict] = []
        if args.resume:
            self._load_resume(args.resume)

    # -- weights ---------------------------------------------------------------------------

    def _load_init(self, path: str) -> None:
        from .keymap import load_original_state_dict, read_state_dict_file

        try:
            meta = load_checkpoint(path, self.model, self.args.model, self.args.num_classes)
            log.info("initialised from %s (%s)", path, {k: meta[k] for k in meta if k in ("iteration", "miou")})
            return
        except CheckpointError as ours:
            raw = read_state_dict_file(path, trust_pickle=self.args.trust_checkpoint)
            try:
                load_original_state_dict(self.model, raw, source=f"weights {path!r}")
            except CheckpointError as theirs:
                raise CheckpointError(f"{path!r} is neither a segblocks checkpoint ({ours}) nor an original "
                                      f"SwiftNet/SegBlocks state_dict ({theirs})") from None
            log.info("initialised from original SwiftNet/SegBlocks weights %s", path)

    def _load_backbone(self, path: str) -> None:
        from .keymap import map_torchvision_backbone, read_state_dict_file

        sd = map_torchvision_backbone(read_state_dict_file(path, trust_pickle=self.args.trust_checkpoint))
        own = self.model.state_dict()
        resnet_keys = [k for k in own if k.startswith("backbone.") and not k.startswith(("backbone.spp.", "backbone.upsample."))]
        missing = [k for k in resnet_keys if k not in sd]
        unexpected = [k for k in sd if k not in own]
        if missing or unexpected:
            raise CheckpointError(f"backbone weights {path!r} do not fit {self.args.model}: "
                                  f"missing {missing[:6]}, unexpected {unexpected[:6]}")
        self.model.load_state_dict(sd, strict=False)
        log.info("backbone initialised from %s", path)

    # -- data ------------------------------------------------------------------------------

    def loaders(self) -> tuple[DataLoader, DataLoader]:
        from .data.cityscapes import (CachedScenes, CityscapesDataset, EvalTransform, SyntheticScenes,
                                      TrainTransform)

        a = self.args
        # uint8 batches (normalised on the device): a quarter of the bytes through the loader
        tr = TrainTransform(a.crop, a.scale, flip=True, normalize=False)
        ev = EvalTransform(normalize=False)
        h, w = a.size
        if a.synthetic and a.cache_frames:
            t = time.perf_counter()
            train = CachedScenes(0, min(a.cache_frames, a.train_scenes), h, w, tr, t_max=a.t_max,
                                 workers=max(1, a.workers))
            self._log({"event": "cache", "frames": len(train), "size": [h, w],
                       "seconds": round(time.perf_counter() - t, 1)})
            val = SyntheticScenes(a.val_seed0, max(1, a.val_images), h, w, ev)
        elif a.synthetic:
            train = SyntheticScenes(0, a.train_scenes, h, w, tr, t_max=a.t_max)
            val = SyntheticScenes(a.val_seed0, max(1, a.val_images), h, w, ev)
        else:
            train = CityscapesDataset(a.data, a.train_split, tr)
            val = CityscapesDataset(a.data, a.val_split, ev)
            if a.val_images:
                val = torch.utils.data.Subset(val, range(min(len(val), a.val_images)))
        g = torch.Generator().manual_seed(a.seed + self.iteration)
        kw = dict(num_workers=a.workers, pin_memory=self.cuda, persistent_workers=a.workers > 0)
        if a.workers > 0:
            kw["prefetch_factor"] = 4
        train_loader = DataLoader(train, batch_size=a.batch_size, shuffle=True, drop_last=True,
                                  generator=g, **kw)
        val_loader = DataLoader(val, batch_size=1, shuffle=False,
                                num_workers=min(a.workers, 8), pin_memory=self.cuda)
        if len(train) < a.batch_size:
            raise ValueError(f"the training set has {len(train)} images, fewer than --batch-size {a.batch_size}")
        return train_loader, val_loader

    # -- steps -----------------------------------------------------------------------------

    def _to_device(self, x: torch.Tensor, y: torch.Tensor, train: bool = False):
        """uint8 ``[N, H, W, 3]`` images and ``[N, H, W]`` labels -> normalised float
        ``[N, 3, H, W]`` (colour-jittered when training with ``--jitter``) and int64 labels."""
        from .engine import normalize

        x = normalize(x.to(self.device, non_blocking=True))
        y = y.to(self.device, non_blocking=True).long()
        if train and self.args.jitter > 0:
            x = _jitter(x, self.args.jitter)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _forward(self, x: torch.Tensor, blocks: bool, tau: Optional[float] = None) -> torch.Tensor:
        if self.cuda:
            # block tensors change shape with every grid: autotuning each shape costs more
            # than it saves
            torch.backends.cudnn.benchmark = not blocks
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            if blocks:
                grid = self.policy(x, tau)
                return self.segblocks(x, grid)
            return self.forward_dense(x)

    def progress(self, elapsed: float = 0.0) -> float:
        """Fraction of the schedule done: iterations, or training time when ``--time-limit``
        ends it first (so time-limited runs still anneal to a zero learning rate)."""
        p = self.iteration / max(1, self.args.max_iters)
        if self.args.time_limit:
            p = max(p, (self.seconds + elapsed) / self.args.time_limit)
        return min(1.0, p)

    def in_block_phase(self, progress: float) -> bool:
        f = self.args.blocks_fraction
        return f > 0 and progress >= 1.0 - f

    def block_step(self, progress: float) -> bool:
        """Whether the next step runs in blocks: in the block phase, a ``--blocks-mix``
        share of the steps, spread evenly."""
        if not self.in_block_phase(progress):
            return False
        mix = self.args.blocks_mix
        return math.floor((self.iteration + 1) * mix) > math.floor(self.iteration * mix)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, progress: Optional[float] = None) -> torch.Tensor:
        """One optimisation step at schedule ``progress``; returns the (device) loss."""
        self.model.train()
        progress = self.progress() if progress is None else progress
        lr = poly_lr(self.base_lr, progress, self.iteration, self.warmup, self.args.poly_power)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        logits = self._forward(x, self.block_step(progress))
        loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE_INDEX)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        return loss.detach()

    @torch.no_grad()
    def validate(self, loader: DataLoader, blocks: bool = False) -> dict:
        """Confusion matrix over the whole validation set -> mIoU, pixel accuracy, per class."""
        self.model.eval()
        k = self.args.num_classes
        conf = np.zeros((k, k), np.int64)
        hr_blocks, all_blocks = 0, 0
        for x, y in loader:
            x, y = self._to_device(x, y)
            logits = self._forward(x, blocks)
            conf += confusion_matrix(logits.argmax(1), y, k, IGNORE_INDEX)
            if blocks:
                grid = self.policy(x)
                hr_blocks += int(grid.sum())
                all_blocks += grid.numel()
        iou = per_class_iou(conf)
        out = {"miou": miou(conf), "pixel_accuracy": pixel_accuracy(conf),
               "per_class_iou": {n: (None if math.isnan(v) else round(float(v), 2))
                                 for n, v in zip(self.class_names, iou)},
               "images": len(loader.dataset)}
        if blocks:
            out["tau"] = self.args.tau
            out["highres_fraction"] = hr_blocks / max(1, all_blocks)
        return out

    # -- checkpoints -----------------------------------------------------------------------

    def _metadata(self, **extra) -> dict:
        meta = {"iteration": self.iteration, "class_names": self.class_names,
                "best_miou": None if self.best_miou == float("-inf") else self.best_miou,
                "train_config": _jsonable(self.args)}
        if self.args.blocks_fraction > 0:
            meta["finetuned_tau"] = self.args.tau
            meta["block_size"] = self.args.block_size
        meta.update(extra)
        return meta

    def save(self, name: str, **extra) -> str:
        path = os.path.join(self.out, name)
        save_checkpoint(path, self.model, self.args.model, self.args.num_classes, **self._metadata(**extra))
        return path

    def save_resume(self) -> str:
        path = os.path.join(self.out, "resume.pt")
        state = {
            "model_state": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "iteration": self.iteration, "seconds": self.seconds,
            "best_miou": self.best_miou, "model": self.args.model, "num_classes": self.args.num_classes,
            "torch_rng": torch.get_rng_state(), "history": self.history,
        }
        tmp = path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def _load_resume(self, path: str) -> None:
        if os.path.isdir(path):
            path = os.path.join(path, "resume.pt")
        if not os.path.isfile(path):
            raise CheckpointError(f"resume file {path!r} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("model") != self.args.model or state.get("num_classes") != self.args.num_classes:
            raise CheckpointError(f"{path!r} was written for {state.get('model')} with "
                                  f"{state.get('num_classes')} classes, not {self.args.model} with "
                                  f"{self.args.num_classes}")
        self.model.load_state_dict(state["model_state"])
        self.model.to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self.seconds = float(state.get("seconds", 0.0))
        self.best_miou = float(state["best_miou"])
        self.history = list(state.get("history", []))
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at iteration %d", path, self.iteration)

    # -- the run ---------------------------------------------------------------------------

    def _log(self, record: dict) -> None:
        record = {"time": round(time.time(), 1), **record}
        self.history.append(record)
        with open(os.path.join(self.out, "log.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    def _evaluate(self, val_loader) -> dict:
        t = time.perf_counter()
        dense = self.validate(val_loader, blocks=False)
        record = {"event": "val", "iteration": self.iteration, "miou": round(dense["miou"], 3),
                  "pixel_accuracy": round(dense["pixel_accuracy"], 3)}
        result = {"dense": dense}
        score = dense["miou"]
        if self.segblocks is not None:
            blk = self.validate(val_loader, blocks=True)
            result["blocks"] = blk
            record.update(miou_blocks=round(blk["miou"], 3), highres_fraction=round(blk["highres_fraction"], 3))
            score = blk["miou"]
        record["seconds"] = round(time.perf_counter() - t, 1)
        self._log(record)
        result["score"] = score
        return result

    def run(self) -> dict:
        a = self.args
        train_loader, val_loader = self.loaders()
        batches = _cycle(train_loader)
        t0 = time.monotonic()
        last = {"t": t0, "it": self.iteration}
        loss_sum, loss_n = None, 0
        result = None
        blocks_phase = False
        self._log({"event": "start", "iteration": self.iteration, "device": str(self.device),
                   "amp": str(self.amp_dtype), "train_images": len(train_loader.dataset),
                   "val_images": len(val_loader.dataset), "blocks_fraction": a.blocks_fraction})
        while True:
            progress = self.progress(time.monotonic() - t0)
            if progress >= 1.0:
                break
            if self.in_block_phase(progress) and not blocks_phase:
                blocks_phase = True
                self._log({"event": "blocks_phase", "iteration": self.iteration, "tau": a.tau,
                           "progress": round(progress, 3)})
            x, y = self._to_device(*next(batches), train=True)
            loss = self.train_step(x, y, progress)
            loss_sum = loss if loss_sum is None else loss_sum + loss
            loss_n += 1
            if self.iteration % a.log_every == 0:
                now = time.monotonic()
                mean_loss = float(loss_sum) / loss_n
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"loss is {mean_loss} at iteration {self.iteration}; "
                                             f"lower --lr or use --amp bf16/off")
                rate = (self.iteration - last["it"]) / max(now - last["t"], 1e-9)
                self._log({"event": "train", "iteration": self.iteration, "loss": round(mean_loss, 4),
                           "lr": self.optimizer.param_groups[0]["lr"], "it_per_s": round(rate, 2),
                           "img_per_s": round(rate * a.batch_size, 1), "elapsed_s": round(now - t0, 1),
                           "blocks": blocks_phase})
                last = {"t": now, "it": self.iteration}
                loss_sum, loss_n = None, 0
            if a.val_every and self.iteration % a.val_every == 0:
                result = self._checkpoint(val_loader, time.monotonic() - t0)
        train_seconds = time.monotonic() - t0
        result = self._checkpoint(val_loader, train_seconds)
        return self._finish(result, train_seconds)

    def _checkpoint(self, val_loader, elapsed: float) -> dict:
        result = self._evaluate(val_loader)
        seconds, self.seconds = self.seconds, self.seconds + elapsed     # saved with the resume file
        score = result["score"]
        self.save("last.pt", miou=score)
        if score > self.best_miou:
            self.best_miou = score
            self.save("best.pt", miou=score)
        self.save_resume()
        self.seconds = seconds
        return result

    def _finish(self, result: dict, seconds: float) -> dict:
        a = self.args
        summary = {
            "model": a.model, "iterations": self.iteration,
            "train_seconds": round(self.seconds + seconds, 1),
            "ended_by": "time_limit" if a.time_limit and self.iteration < a.max_iters else "max_iters",
            "best_miou": None if self.best_miou == float("-inf") else self.best_miou,
            "final": {k: v for k, v in result.items() if k != "score"},
            "val": ({"synthetic_seeds": [a.val_seed0, a.val_seed0 + max(1, a.val_images)], "size": list(a.size)}
                    if a.synthetic else {"root": a.data, "split": a.val_split}),
            "device": str(self.device), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(self.device) if self.cuda else None,
            "config": _jsonable(a),
        }
        if a.export_half:
            best = os.path.join(self.out, "best.pt")
            source = best if os.path.isfile(best) else os.path.join(self.out, "last.pt")
            export_half(source, a.export_half, a.model, a.num_classes)
            summary["exported"] = {"path": a.export_half, "from": source,
                                   "bytes": os.path.getsize(a.export_half)}
        for path in filter(None, (os.path.join(self.out, "metrics.json"), a.metrics_json)):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=2)
        return summary


def export_half(source: str, dest: str, model_name: str, num_classes: int) -> None:
    """Re-save checkpoint ``source`` with fp16 weights (metadata kept, optimizer never
    included) for shipping."""
    model = build_model(model_name, num_classes)
    metadata = load_checkpoint(source, model, model_name, num_classes)
    metadata.pop("model", None)
    metadata.pop("num_classes", None)
    save_checkpoint(dest, model, model_name, num_classes, half=True, **metadata)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.generate or args.generate_val:
        if not args.data:
            print("segblocks-train: --generate/--generate-val need --data ROOT", file=sys.stderr)
            return 2
        from .data.cityscapes import write_synthetic_cityscapes

        h, w = args.size
        t = time.perf_counter()
        if args.generate:
            write_synthetic_cityscapes(args.data, args.train_split, args.generate, h, w, 0,
                                       workers=max(1, args.workers))
        if args.generate_val:
            write_synthetic_cityscapes(args.data, args.val_split, args.generate_val, h, w, args.val_seed0,
                                       workers=max(1, args.workers))
        print(json.dumps({"event": "generated", "train": args.generate, "val": args.generate_val,
                          "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    if args.max_iters < 0 or args.batch_size < 1:
        print("segblocks-train: --max-iters must be >= 0 and --batch-size >= 1", file=sys.stderr)
        return 2
    try:
        summary = Trainer(args).run()
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"segblocks-train: {exc}", file=sys.stderr)
        return 1
    final = summary["final"]
    line = {"best_miou": summary["best_miou"], "dense_miou": final["dense"]["miou"],
            "iterations": summary["iterations"]}
    if "blocks" in final:
        line["blocks_miou"] = final["blocks"]["miou"]
    print(json.dumps({"event": "done", **line}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
