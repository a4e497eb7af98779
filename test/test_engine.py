"""The single inference entry point (SegmentationEngine.infer)."""

import numpy as np
import pytest
import torch

from segblocks_core.checkpoint import CheckpointError, save_checkpoint
from segblocks_core.engine import SegmentationEngine, normalize
from segblocks_core.models import swiftnet_rn18


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    return SegmentationEngine("swiftnet_rn18", checkpoint="random", device="cpu", block_size=64)


def textured_and_flat(h=128, w=256, seed=0):
    """Left half noise (complex), right half flat grey."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 128, np.uint8)
    img[:, : w // 2] = rng.integers(0, 256, (h, w // 2, 3), dtype=np.uint8)
    return img


def test_infer_outputs_and_stats(engine):
    img = textured_and_flat()
    res = engine.infer(img, tau=0.3)
    assert res.labels.shape == (1, 128, 256) and res.labels.dtype == np.uint8
    assert res.labels.max() < 19
    assert res.grid.shape == (1, 2, 4) and res.grid.dtype == bool
    # noise blocks are complex, flat blocks never are
    assert res.grid[0, :, :2].all() and not res.grid[0, :, 2:].any()
    s = res.stats[0]
    assert s.blocks_total == 8 and s.blocks_highres == 4 and s.highres_fraction == 0.5
    assert s.adaptive and s.tau == 0.3 and s.batch_size == 1
    assert 0 < s.gmacs_effective < s.gmacs_dense
    assert s.gmacs_effective == pytest.approx(s.gmacs_dense * (0.5 + 0.5 / 4), rel=0.01)
    assert s.total_ms >= s.inference_ms > 0 and s.preprocess_ms > 0 and s.postprocess_ms > 0


def test_all_highres_labels_equal_dense_labels(engine):
    img = np.random.default_rng(1).integers(0, 256, (128, 192, 3), dtype=np.uint8)
    adaptive = engine.infer(img, tau=0.0)
    dense = engine.infer(img, adaptive=False)
    assert adaptive.stats[0].highres_fraction == 1.0
    assert not dense.stats[0].adaptive and dense.grid.all()
    assert dense.stats[0].gmacs_effective == dense.stats[0].gmacs_dense
    assert (adaptive.labels == dense.labels).mean() > 0.999


def test_batch_of_images_and_tau_trend(engine):
    imgs = [textured_and_flat(seed=i) for i in range(3)]
    res = engine.infer(imgs, tau=0.3)
    assert res.labels.shape == (3, 128, 256) and len(res.stats) == 3
    assert all(s.batch_size == 3 for s in res.stats)
    fractions = [engine.infer(imgs[0], tau=t).stats[0].highres_fraction for t in (0.0, 0.5, 1e9)]
    # flat halves stay low-res even at tau = 0
    assert fractions[0] == 0.5 and fractions[-1] == 0.0 and fractions == sorted(fractions, reverse=True)


def test_fixed_capacity_layout(engine):
    res = engine.infer(textured_and_flat(), tau=0.3, num_highres=6)
    assert res.stats[0].blocks_highres == 6
    assert res.grid[0, :, :2].all()        # the grid's blocks are kept


def test_bad_images(engine):
    with pytest.raises(TypeError, match="uint8"):
        engine.infer(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        engine.infer(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="same size"):
        engine.infer([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 32, 3), np.uint8)])
    with pytest.raises(ValueError, match="empty"):
        engine.infer(np.zeros((0, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="tau"):
        engine.infer(np.zeros((64, 64, 3), np.uint8), tau=-0.1)
    with pytest.raises(ValueError, match="NaN"):
        engine.infer(np.zeros((64, 64, 3), np.uint8), tau=float("nan"))


def test_configuration_errors_say_what_to_do(tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            SegmentationEngine(checkpoint="random", device="cuda")
        with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
            SegmentationEngine(checkpoint="random", device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="unknown device"):
        SegmentationEngine(checkpoint="random", device="tpu")
    with pytest.raises(ValueError, match="unknown model"):
        SegmentationEngine("swiftnet_rn34", checkpoint="random")
    with pytest.raises(CheckpointError, match="does not exist"):
        SegmentationEngine(checkpoint=str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        SegmentationEngine(checkpoint=str(bad))


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    torch.manual_seed(5)
    net = swiftnet_rn18(num_classes=5).eval()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), net, "swiftnet_rn18", 5, class_names=list("abcde"))
    eng = SegmentationEngine("swiftnet_rn18", checkpoint=str(path), num_classes=5, device="cpu")
    assert eng.class_names == list("abcde")
    img = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = net(normalize(torch.from_numpy(img)[None])).argmax(1).numpy()
    assert (eng.infer(img, adaptive=False).labels == expected).all()
    with pytest.raises(CheckpointError, match="5 classes"):
        SegmentationEngine("swiftnet_rn18", checkpoint=str(path), num_classes=19)
    with pytest.raises(CheckpointError, match="swiftnet_rn50"):
        SegmentationEngine("swiftnet_rn50", checkpoint=str(path), num_classes=5)
    sd = net.state_dict()
    sd.pop("logits.conv.bias")
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing keys: logits.conv.bias"):
        SegmentationEngine("swiftnet_rn18", checkpoint=str(tmp_path / "partial.pt"), num_classes=5)


def test_fast_path_needs_cuda():
    with pytest.raises(ValueError, match="fast_path needs a CUDA device"):
        SegmentationEngine("swiftnet_rn18", checkpoint="random", device="cpu", fast_path=True)
    assert not SegmentationEngine("swiftnet_rn18", checkpoint="random", device="cpu").fast_path


def test_conv_units_option_is_checked():
    from segblocks_core import SegmentationEngine

    with pytest.raises(ValueError, match="conv_units mode must be one of"):
        SegmentationEngine(checkpoint="random", device="cpu", conv_units="fast")
    assert SegmentationEngine(checkpoint="random", device="cpu", conv_units="auto").conv_units == "auto"


def test_warmup_checks_its_sizes_and_needs_the_fast_path():
    from segblocks_core.engine import SegmentationEngine
    engine = SegmentationEngine(checkpoint="random", device="cpu")
    for bad in ({"height": 0, "width": 64}, {"height": 64, "width": -1}, {"height": 64, "width": 64, "batch": 0},
                {"height": 64.5, "width": 64}, {"height": True, "width": 64}):
        with pytest.raises(ValueError, match="warm-up"):
            engine.warmup(**bad)
    assert engine.warmup(64, 128) is False  # no fast path on the CPU: nothing captured
    assert not engine._graphs


def test_cudnn_benchmark_limit_option_is_checked():
    from segblocks_core.engine import SegmentationEngine
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="cudnn_benchmark_limit"):
            SegmentationEngine(checkpoint="random", device="cpu", cudnn_benchmark_limit=bad)
    assert SegmentationEngine(checkpoint="random", device="cpu", cudnn_benchmark_limit=10).cudnn_benchmark_limit == 10
