"""Cityscapes-layout writer and loader, training transform, on-the-fly synthetic scenes."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from segblocks_core.data.cityscapes import (
    CITYSCAPES_ID_TO_TRAIN_ID, CachedScenes, CityscapesDataset, EvalTransform, SyntheticScenes, TrainTransform,
    write_synthetic_cityscapes)
from segblocks_core.data.scenes import render_scene
from segblocks_core.engine import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cityscapes"))
    write_synthetic_cityscapes(root, "train", 3, 64, 128, seed0=10)
    write_synthetic_cityscapes(root, "val", 2, 64, 128, seed0=500)
    return root


def denormalize(x: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x * std + mean) * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def test_writer_uses_the_cityscapes_layout(mini_root):
    img = os.path.join(mini_root, "leftImg8bit", "train", "synthetic", "synthetic_000010_000019_leftImg8bit.png")
    lab = os.path.join(mini_root, "gtFine", "train", "synthetic", "synthetic_000010_000019_gtFine_labelTrainIds.png")
    assert os.path.isfile(img) and os.path.isfile(lab)
    assert Image.open(lab).mode == "L" and Image.open(img).mode == "RGB"
    assert len(os.listdir(os.path.dirname(img))) == 3


def test_loader_reads_back_exactly_what_was_rendered(mini_root):
    ds = CityscapesDataset(mini_root, "val")
    assert len(ds) == 2
    for i, seed in enumerate((500, 501)):
        image, label = ds[i]
        scene = render_scene(seed, 64, 128)
        np.testing.assert_array_equal(image, scene.image)
        np.testing.assert_array_equal(label, scene.label)


def test_writer_keeps_existing_files(mini_root):
    path = os.path.join(mini_root, "leftImg8bit", "val", "synthetic", "synthetic_000500_000019_leftImg8bit.png")
    before = os.path.getmtime(path)
    write_synthetic_cityscapes(mini_root, "val", 2, 64, 128, seed0=500)
    assert os.path.getmtime(path) == before


def test_raw_cityscapes_label_ids_are_converted(tmp_path):
    root = tmp_path
    for sub, name, arr in (("leftImg8bit", "a_000000_000019_leftImg8bit.png", np.zeros((4, 6, 3), np.uint8)),
                           ("gtFine", "a_000000_000019_gtFine_labelIds.png",
                            np.array([[7, 8, 26, 23, 0, 33]] * 4, np.uint8))):
        d = root / sub / "val" / "a"
        d.mkdir(parents=True)
        Image.fromarray(arr).save(d / name)
    _, label = CityscapesDataset(str(root), "val")[0]
    np.testing.assert_array_equal(label[0], [0, 1, 13, 10, 255, 18])
    assert CITYSCAPES_ID_TO_TRAIN_ID[24] == 11


def test_missing_data_raise_clear_errors(tmp_path, mini_root):
    with pytest.raises(FileNotFoundError, match="no images"):
        CityscapesDataset(str(tmp_path), "train")
    d = tmp_path / "leftImg8bit" / "train" / "x"
    d.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(d / "x_1_2_leftImg8bit.png")
    with pytest.raises(FileNotFoundError, match="no label"):
        CityscapesDataset(str(tmp_path), "train")


def test_eval_transform_normalises_like_the_engine(mini_root):
    ds = CityscapesDataset(mini_root, "val", EvalTransform())
    x, y = ds[0]
    image, label = CityscapesDataset(mini_root, "val")[0]
    assert x.shape == (3, 64, 128) and x.dtype == torch.float32 and y.dtype == torch.int64
    from segblocks_core.engine import normalize
    torch.testing.assert_close(x, normalize(torch.from_numpy(image)[None])[0])
    np.testing.assert_array_equal(y.numpy(), label)


def test_train_transform_keeps_image_and_label_aligned():
    # colour encodes the class, so alignment survives crop and flip exactly at scale 1
    rng = np.random.default_rng(0)
    label = rng.integers(0, 19, (40, 60)).astype(np.uint8)
    image = np.stack([label * 10, 255 - label * 10, label * 5], -1).astype(np.uint8)
    tr = TrainTransform((24, 32), scale=(1.0, 1.0), flip=True)
    flips = 0
    for i in range(20):
        torch.manual_seed(i)
        x, y = tr(image, label)
        assert x.shape == (3, 24, 32) and y.shape == (24, 32)
        rgb = denormalize(x)
        np.testing.assert_array_equal(rgb[..., 0], y.numpy().astype(np.uint8) * 10)
        # the crop is a (possibly mirrored) window of the label
        yn = y.numpy()
        found = any((label[r:r + 24, c:c + 32] == yn).all() or (label[r:r + 24, c:c + 32][:, ::-1] == yn).all()
                    for r in range(17) for c in range(29))
        assert found
        flips += not any((label[r:r + 24, c:c + 32] == yn).all() for r in range(17) for c in range(29))
    assert 0 < flips < 20


def test_train_transform_resizes_labels_with_nearest_and_pads_with_ignore():
    label = np.zeros((32, 32), np.uint8)
    label[:, 16:] = 5
    image = np.full((32, 32, 3), 100, np.uint8)
    tr = TrainTransform(48, scale=(0.5, 0.5), flip=False)
    x, y = tr(image, label)
    assert x.shape == (3, 48, 48)
    assert set(np.unique(y[:16, :16].numpy()).tolist()) <= {0, 5}        # no blended ids
    assert (y[16:] == 255).all() and (y[:, 16:] == 255).all()             # padding ignored
    assert (x[:, 16:] == 0).all()                                         # mean colour
    big = TrainTransform(16, scale=(2.0, 2.0), flip=False)
    _, y2 = big(image, label)
    assert set(np.unique(y2.numpy()).tolist()) <= {0, 5}


def test_synthetic_scenes_eval_items_are_the_rendered_frames():
    ds = SyntheticScenes(1000, 3, 64, 128)
    image, label = ds[2]
    np.testing.assert_array_equal(label, render_scene(1002, 64, 128).label)
    with pytest.raises(IndexError):
        ds[3]


def test_synthetic_scenes_train_items_are_crops_with_valid_labels():
    ds = SyntheticScenes(0, 10, 128, 256, TrainTransform((64, 96), scale=(0.5, 1.5)), t_max=50)
    torch.manual_seed(0)
    for i in range(4):
        x, y = ds[i]
        assert x.shape == (3, 64, 96) and y.shape == (64, 96)
        ids = set(np.unique(y.numpy()).tolist())
        assert ids <= set(range(19)) | {255}
        assert len(ids - {255}) >= 2


@pytest.mark.parametrize("workers", [0, 2])
def test_cached_scenes_hold_the_rendered_frames(workers):
    ds = CachedScenes(40, 3, 48, 96, t_max=30.0, workers=workers)
    assert len(ds) == 3 and ds.images.shape == (3, 48, 96, 3)
    for i in range(3):
        scene = render_scene(40 + i, 48, 96, t=float(ds.positions[i]))
        np.testing.assert_array_equal(ds[i][1], scene.label)
        np.testing.assert_array_equal(ds[i][0], scene.image)
    assert len(set(np.round(ds.positions, 3))) == 3


def test_uint8_transform_matches_the_normalised_one():
    from segblocks_core.engine import normalize
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    label = rng.integers(0, 19, (40, 50)).astype(np.uint8)
    for normalize_, seed in ((True, 5), (False, 5)):
        torch.manual_seed(seed)
        out = TrainTransform((48, 56), scale=(0.7, 0.9), normalize=normalize_)(image, label)
        if normalize_:
            xf, yf = out
        else:
            x8, y8 = out
    assert x8.dtype == torch.uint8 and x8.shape == (48, 56, 3) and y8.dtype == torch.uint8
    torch.testing.assert_close(normalize(x8[None])[0], xf, atol=0.02, rtol=0)   # pad: mean colour ~ 0
    np.testing.assert_array_equal(y8.long().numpy(), yf.numpy())
