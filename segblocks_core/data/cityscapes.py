"""Cityscapes folder layout: writing generated scenes, reading (real or generated) data.

Layout (as distributed by cityscapes-dataset.com, after ``createTrainIdLabelImgs``)::

    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

:class:`CityscapesDataset` also reads ``*_gtFine_labelIds.png`` (the raw Cityscapes ids)
when no train-id file exists and converts them. :class:`SyntheticScenes` renders scenes on
the fly instead (no disk, unlimited data, the random scale and crop applied while
rendering so only the crop's pixels are drawn).

Pillow is needed only to read and write PNG files; torch only for the datasets.
"""

from __future__ import annotations

import glob
import math
import os
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..classes import IGNORE_INDEX
from ..engine import IMAGENET_MEAN, IMAGENET_STD
from .scenes import render_scene

__all__ = ["write_synthetic_cityscapes", "CityscapesDataset", "SyntheticScenes", "CachedScenes", "TrainTransform",
           "EvalTransform", "CITYSCAPES_ID_TO_TRAIN_ID", "IMAGE_SUFFIX", "LABEL_SUFFIX"]

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"
RAW_LABEL_SUFFIX = "_gtFine_labelIds.png"

#: Cityscapes label id -> train id (255 = ignore), index = id (0..33)
CITYSCAPES_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, np.uint8)
for _id, _train in {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}.items():
    CITYSCAPES_ID_TO_TRAIN_ID[_id] = _train


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is a declared dependency
        raise ImportError("reading and writing PNG files needs Pillow: pip install pillow") from exc
    return Image


# ---------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------


def _paths(root: str, split: str, city: str, name: str) -> tuple[str, str]:
    return (os.path.join(root, "leftImg8bit", split, city, name + IMAGE_SUFFIX),
            os.path.join(root, "gtFine", split, city, name + LABEL_SUFFIX))


def _write_png(path: str, array: np.ndarray, compress_level: int) -> None:
    tmp = path + ".tmp.png"
    _pil().fromarray(array).save(tmp, compress_level=compress_level)
    os.replace(tmp, path)


def _write_one(job) -> str:
    root, split, city, seed, height, width, compress_level = job
    name = f"{city}_{seed:06d}_000019"
    img_path, lab_path = _paths(root, split, city, name)
    if not (os.path.isfile(img_path) and os.path.isfile(lab_path)):
        scene = render_scene(seed, height, width)
        _write_png(lab_path, scene.label, compress_level)
        _write_png(img_path, scene.image, compress_level)
    return name


def write_synthetic_cityscapes(root: str, split: str, num_images: int, height: int, width: int,
                               seed0: int = 0, city: str = "synthetic", workers: int = 0,
                               compress_level: int = 1) -> list[str]:
    """Render ``num_images`` scenes (seeds ``seed0 ... seed0 + num_images - 1``) into the
    Cityscapes layout under ``root``.

    Files that already exist are kept, so an interrupted run can be continued. Use seed
    ranges that do not overlap for the training and validation splits.

    Args:
        root: dataset root (created if needed).
        split: ``train``, ``val``, ...
        num_images: number of frames.
        height, width: frame size.
        seed0: first scene seed.
        city: the city folder and name prefix.
        workers: processes to render with (0 or 1: in this process).
        compress_level: PNG compression (0-9; 1 is fast and about 15% larger than 9).

    Returns:
        The frame names ``<city>_<seed>_000019``.
    """
    if isinstance(num_images, bool) or int(num_images) != num_images or num_images < 0:
        raise ValueError(f"num_images must be a non-negative integer, got {num_images!r}")
    if not split or os.sep in split or not city or os.sep in city:
        raise ValueError(f"split and city must be plain folder names, got {split!r}, {city!r}")
    if seed0 < 0:
        raise ValueError(f"seed0 must be >= 0, got {seed0}")
    for sub in ("leftImg8bit", "gtFine"):
        os.makedirs(os.path.join(root, sub, split, city), exist_ok=True)
    jobs = [(root, split, city, seed0 + i, int(height), int(width), compress_level)
            for i in range(int(num_images))]
    if workers and workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        with mp.get_context("fork" if hasattr(os, "fork") else "spawn").Pool(workers) as pool:
            return list(pool.imap(_write_one, jobs, chunksize=4))
    return [_write_one(job) for job in jobs]


# ---------------------------------------------------------------------------------------
# transforms (torch ops, so they run the same in every DataLoader worker)
# ---------------------------------------------------------------------------------------


def _normalize_chw(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> normalised float32 ``[3, H, W]`` (as the engine does)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255)
    return (image.permute(2, 0, 1).float() - mean) * inv_std


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


#: uint8 fill colour for padding: the mean colour, i.e. about zero once normalised
MEAN_RGB = tuple(round(m * 255) for m in IMAGENET_MEAN)


class EvalTransform:
    """uint8 image ``[H, W, 3]`` and label ``[H, W]`` -> ``(x [3, H, W] float32, y [H, W]
    int64)``, full resolution, no augmentation.

    With ``normalize=False`` the tensors stay uint8 (``x [H, W, 3]``, ``y [H, W]``): a
    quarter of the bytes to move between processes; normalise on the GPU with
    :func:`segblocks_core.engine.normalize` (``segblocks-train`` does).
    """

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def __call__(self, image: np.ndarray, label: np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(image))
        y = torch.from_numpy(np.ascontiguousarray(label))
        return (_normalize_chw(x), y.long()) if self.normalize else (x, y)


class TrainTransform:
    """Random scale, crop, horizontal flip and colour jitter, then normalisation.

    The crop window is chosen in the scaled image and only the source pixels under it are
    resized (bilinear for the image, nearest for the label), so large frames cost little.
    Where the scaled image is smaller than the crop the rest is padded: zero after
    normalisation (the mean colour) and ``ignore_index`` in the label.

    Args:
        crop: output size ``(h, w)`` or ``s`` for a square.
        scale: ``(min, max)`` range of the random scale factor.
        flip: random horizontal flip with probability 0.5.
        jitter: brightness/contrast/saturation jitter amplitude (0 disables; only with
            ``normalize``).
        ignore_index: label fill value.
        normalize: return normalised float32 ``[3, h, w]`` and int64 labels; False returns
            uint8 ``[h, w, 3]`` and uint8 labels (padding in the mean colour) for
            normalisation on the GPU.
    """

    def __init__(self, crop, scale: Sequence[float] = (0.5, 1.5), flip: bool = True,
                 jitter: float = 0.0, ignore_index: int = IGNORE_INDEX, normalize: bool = True):
        self.normalize = normalize
        self.crop = _pair(crop)
        if min(self.crop) < 1:
            raise ValueError(f"crop must be positive, got {crop}")
        lo, hi = (float(v) for v in scale)
        if not (0 < lo <= hi):
            raise ValueError(f"scale range must satisfy 0 < min <= max, got {scale}")
        self.scale = (lo, hi)
        self.flip = flip
        self.jitter = float(jitter)
        self.ignore_index = ignore_index

    def window(self, height: int, width: int, s: float) -> tuple[int, int, int, int]:
        """Random ``(top, left, h, w)`` crop of a ``round(height*s) x round(width*s)`` frame
        (h, w smaller than the crop when the frame is)."""
        ch, cw = self.crop
        sh, sw = max(1, round(height * s)), max(1, round(width * s))
        h, w = min(ch, sh), min(cw, sw)
        top = int(torch.randint(0, sh - h + 1, ()).item())
        left = int(torch.randint(0, sw - w + 1, ()).item())
        return top, left, h, w

    def random_scale(self) -> float:
        lo, hi = self.scale
        return float(math.exp(torch.empty(()).uniform_(math.log(lo), math.log(hi)).item()))

    def finish(self, image: torch.Tensor, label: torch.Tensor):
        """uint8 ``[h, w, 3]`` / ``[h, w]`` crop -> padded, flipped, jittered, normalised."""
        ch, cw = self.crop
        if not self.normalize:
            x, y = image, label
            if self.flip and torch.rand(()) < 0.5:
                x, y = x.flip(1), y.flip(1)
            h, w = y.shape
            if (h, w) != (ch, cw):
                out = torch.empty((ch, cw, 3), dtype=torch.uint8)
                out[:] = torch.tensor(MEAN_RGB, dtype=torch.uint8)
                out[:h, :w] = x
                lab = torch.full((ch, cw), self.ignore_index, dtype=torch.uint8)
                lab[:h, :w] = y
                x, y = out, lab
            return x.contiguous(), y.contiguous()
        x = _normalize_chw(image)
        y = label.long()
        if self.jitter > 0:
            j = self.jitter
            b, c, sat = (1 + (torch.rand(3) * 2 - 1) * j).tolist()
            grey = x.mean(0, keepdim=True)
            x = grey + (x - grey) * sat
            x = (x - x.mean()) * c + x.mean() + (b - 1) * 2.0
        if self.flip and torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        h, w = y.shape
        if (h, w) != (ch, cw):
            x = F.pad(x, (0, cw - w, 0, ch - h))
            y = F.pad(y, (0, cw - w, 0, ch - h), value=self.ignore_index)
        return x.contiguous(), y.contiguous()

    def __call__(self, image: np.ndarray, label: np.ndarray):
        """uint8 image ``[H, W, 3]`` and label ``[H, W]`` -> ``(x [3, h, w] float32,
        y [h, w] int64)`` with ``(h, w) = crop``."""
        height, width = label.shape
        s = self.random_scale()
        top, left, h, w = self.window(height, width, s)
        # source box under the crop window
        y0, x0 = int(math.floor(top / s)), int(math.floor(left / s))
        y1 = min(height, max(y0 + 1, int(math.ceil((top + h) / s))))
        x1 = min(width, max(x0 + 1, int(math.ceil((left + w) / s))))
        img = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1]))
        lab = torch.from_numpy(np.ascontiguousarray(label[y0:y1, x0:x1]))
        if (y1 - y0, x1 - x0) != (h, w):
            img = F.interpolate(img.permute(2, 0, 1)[None].float(), size=(h, w), mode="bilinear",
                                align_corners=False, antialias=s < 1)[0]
            img = img.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
            lab = F.interpolate(lab[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0].to(torch.uint8)
        return self.finish(img, lab)


# ---------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------


class CityscapesDataset(Dataset):
    """Images and train-id labels in the Cityscapes layout.

    Args:
        root: dataset root (holds ``leftImg8bit/`` and ``gtFine/``).
        split: ``train``, ``val``, ...
        transform: ``transform(image uint8 [H, W, 3], label uint8 [H, W])``; None returns
            the numpy arrays.

    Raises:
        FileNotFoundError: no images for the split, or an image without a label file.
    """

    def __init__(self, root: str, split: str = "train",
                 transform: Optional[Callable] = None):
        self.root, self.split, self.transform = root, split, transform
        pattern = os.path.join(root, "leftImg8bit", split, "*", "*" + IMAGE_SUFFIX)
        self.images = sorted(glob.glob(pattern))
        if not self.images:
            raise FileNotFoundError(f"no images match {pattern}; is {root!r} a Cityscapes-layout "
                                    f"root with a {split!r} split?")
        self.labels = []
        for path in self.images:
            city = os.path.basename(os.path.dirname(path))
            name = os.path.basename(path)[: -len(IMAGE_SUFFIX)]
            base = os.path.join(root, "gtFine", split, city, name)
            if os.path.isfile(base + LABEL_SUFFIX):
                self.labels.append(base + LABEL_SUFFIX)
            elif os.path.isfile(base + RAW_LABEL_SUFFIX):
                self.labels.append(base + RAW_LABEL_SUFFIX)
            else:
                raise FileNotFoundError(f"no label for {path}: expected {base + LABEL_SUFFIX}")

    def __len__(self) -> int:
        return len(self.images)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB ``[H, W, 3]`` and train ids ``[H, W]`` of frame ``index``."""
        Image = _pil()
        with Image.open(self.images[index]) as im:
            image = np.array(im.convert("RGB"))
        with Image.open(self.labels[index]) as im:
            label = np.array(im)
        if label.ndim != 2:
            raise ValueError(f"label {self.labels[index]} is not a single-channel image")
        if self.labels[index].endswith(RAW_LABEL_SUFFIX):
            label = CITYSCAPES_ID_TO_TRAIN_ID[label]
        if label.shape != image.shape[:2]:
            raise ValueError(f"{self.images[index]} is {image.shape[:2]} but its label is {label.shape}")
        return image, label.astype(np.uint8, copy=False)

    def __getitem__(self, index: int):
        image, label = self.read(index)
        return (image, label) if self.transform is None else self.transform(image, label)


class SyntheticScenes(Dataset):
    """Scenes rendered on the fly: item ``i`` is scene ``seed0 + i``.

    Training (``transform`` a :class:`TrainTransform`): the random scale is applied by
    rendering a ``scale * (height, width)`` frame and the random crop by rendering only
    that window, at a random position ``t`` in ``[0, t_max)`` metres along the scene's
    road (a scene is an endless street, so every epoch sees new views). Evaluation
    (``transform`` None or :class:`EvalTransform`): the full frame at ``t = 0``.

    Args:
        seed0: first seed; the set is ``range(seed0, seed0 + length)``.
        length: number of scenes.
        height, width: base frame size.
        transform: None (numpy arrays), :class:`EvalTransform` or :class:`TrainTransform`.
        t_max: range of positions along the road for training views.
    """

    def __init__(self, seed0: int, length: int, height: int, width: int,
                 transform: Optional[Callable] = None, t_max: float = 0.0):
        if seed0 < 0 or length < 1:
            raise ValueError(f"need seed0 >= 0 and length >= 1, got {seed0}, {length}")
        self.seed0, self.length = int(seed0), int(length)
        self.height, self.width = int(height), int(width)
        self.transform = transform
        self.t_max = float(t_max)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(index)
        seed = self.seed0 + int(index)
        tr = self.transform
        if isinstance(tr, TrainTransform):
            s = tr.random_scale()
            vh, vw = max(8, round(self.height * s)), max(8, round(self.width * s))
            window = tr.window(vh, vw, 1.0)
            t = float(torch.rand(()).item()) * self.t_max
            scene = render_scene(seed, vh, vw, t=t, window=window)
            return tr.finish(torch.from_numpy(scene.image), torch.from_numpy(scene.label))
        scene = render_scene(seed, self.height, self.width)
        return (scene.image, scene.label) if tr is None else tr(scene.image, scene.label)


def _render_frame(job) -> tuple[np.ndarray, np.ndarray]:
    seed, height, width, t = job
    scene = render_scene(seed, height, width, t=t)
    return scene.image, scene.label


class CachedScenes(Dataset):
    """Synthetic frames rendered once into memory, then sampled like a dataset on disk.

    Rendering a frame costs far more CPU than cropping one, so for short GPU runs a cache of
    a few thousand frames (each seen many times under random scale, crop and flip) feeds
    the GPU where on-the-fly rendering cannot. Frame ``i`` is scene ``seed0 + i`` seen from
    a random position in ``[0, t_max)`` metres along its road. The arrays are shared with
    forked data-loader workers without copies.

    Args:
        seed0, length: scenes ``seed0 .. seed0 + length - 1``.
        height, width: frame size (memory: ``length * height * width * 4`` bytes).
        transform: ``transform(image, label)``, e.g. :class:`TrainTransform`; None returns
            the arrays.
        t_max: range of camera positions along the road.
        workers: processes that render the cache.
    """

    def __init__(self, seed0: int, length: int, height: int, width: int,
                 transform: Optional[Callable] = None, t_max: float = 0.0, workers: int = 0):
        if seed0 < 0 or length < 1:
            raise ValueError(f"need seed0 >= 0 and length >= 1, got {seed0}, {length}")
        self.transform = transform
        rng = np.random.default_rng([seed0, length, 77])
        ts = rng.uniform(0.0, t_max, length) if t_max > 0 else np.zeros(length)
        #: camera position (metres along the road) of each cached frame
        self.positions = ts
        jobs = [(seed0 + i, int(height), int(width), float(ts[i])) for i in range(int(length))]
        self.images = np.empty((length, height, width, 3), np.uint8)
        self.labels = np.empty((length, height, width), np.uint8)
        if workers and workers > 1:
            import multiprocessing as mp
            with mp.get_context("fork" if hasattr(os, "fork") else "spawn").Pool(workers) as pool:
                frames = pool.imap(_render_frame, jobs, chunksize=2)
                for i, (image, label) in enumerate(frames):
                    self.images[i], self.labels[i] = image, label
        else:
            for i, job in enumerate(jobs):
                self.images[i], self.labels[i] = _render_frame(job)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, label = self.images[index], self.labels[index]
        return (image, label) if self.transform is None else self.transform(image, label)
