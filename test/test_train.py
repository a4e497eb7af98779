"""segblocks-train on tiny CPU runs, checkpoints, resume, block fine-tuning, and loading
state_dicts in the original SwiftNet/SegBlocks naming."""

import json
import os

import pytest
import torch

from segblocks_core.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from segblocks_core.classes import CITYSCAPES_CLASSES
from segblocks_core.data.cityscapes import write_synthetic_cityscapes
from segblocks_core.engine import IMAGENET_MEAN, IMAGENET_STD
from segblocks_core.keymap import (CITYSCAPES_MEAN, CITYSCAPES_STD, load_original_state_dict,
                                   map_original_state_dict)
from segblocks_core.models import build_model
from segblocks_core.train import Trainer, build_parser, main, poly_lr

from conftest import randomize_batchnorm


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data"))
    write_synthetic_cityscapes(root, "train", 4, 64, 128, seed0=0)
    write_synthetic_cityscapes(root, "val", 2, 64, 128, seed0=1_000_000)
    return root


def common(root, out, *extra):
    return ["--data", root, "--crop", "64x128", "--scale", "1,1", "--batch-size", "2", "--workers", "0",
            "--lr", "2e-3", "--warmup-iters", "0", "--log-every", "3", "--val-every", "0",
            "--out", str(out), *extra]


def records(out, event):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["event"] == event]


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    assert main(common(data_root, out, "--max-iters", "12", "--export-half", str(out / "half.pt"))) == 0
    return out


def test_loss_goes_down_and_validation_runs(trained):
    losses = [r["loss"] for r in records(trained, "train")]
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0]
    metrics = json.load(open(trained / "metrics.json"))
    assert metrics["iterations"] == 12
    dense = metrics["final"]["dense"]
    assert 0 <= dense["miou"] <= 100 and dense["images"] == 2
    assert set(dense["per_class_iou"]) == set(CITYSCAPES_CLASSES)


def test_checkpoint_round_trip(trained):
    meta = read_checkpoint(str(trained / "last.pt"))
    assert meta["model"] == "swiftnet_rn18" and meta["num_classes"] == 19
    assert meta["iteration"] == 12 and meta["class_names"] == list(CITYSCAPES_CLASSES)
    assert "optimizer" not in meta
    net = build_model("swiftnet_rn18", 19)
    load_checkpoint(str(trained / "last.pt"), net, "swiftnet_rn18", 19)
    resume = torch.load(trained / "resume.pt", weights_only=True)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, resume["model_state"][k], rtol=0, atol=0)
    # the shipped fp16 export: half the size, same predictions
    half = read_checkpoint(str(trained / "half.pt"))
    assert all(v.dtype == torch.float16 for v in half["state_dict"].values() if v.is_floating_point())
    assert os.path.getsize(trained / "half.pt") < 0.55 * os.path.getsize(trained / "last.pt")
    net16 = build_model("swiftnet_rn18", 19)
    load_checkpoint(str(trained / "half.pt"), net16, "swiftnet_rn18", 19)
    x = torch.randn(1, 3, 64, 128)
    a, b = net.eval()(x), net16.eval()(x)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99


def test_resume_continues_the_iteration_count(trained, data_root, tmp_path):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    assert main(common(data_root, out, "--max-iters", "15", "--resume", str(out))) == 0
    start = records(out, "start")
    assert [r["iteration"] for r in start] == [0, 12]
    assert [r["iteration"] for r in records(out, "train")][-1] == 15
    assert read_checkpoint(str(out / "last.pt"))["iteration"] == 15
    # the optimizer state travelled: AdamW step counters continue
    state = torch.load(out / "resume.pt", weights_only=True)["optimizer"]["state"]
    assert int(next(iter(state.values()))["step"]) == 15


def test_resume_refuses_another_architecture(trained, data_root, tmp_path):
    args = build_parser().parse_args(common(data_root, tmp_path, "--model", "swiftnet_rn50",
                                            "--resume", str(trained)))
    with pytest.raises(CheckpointError, match="swiftnet_rn18"):
        Trainer(args)


def test_poly_schedule():
    assert poly_lr(1.0, 0.0, iteration=0, warmup=10) == pytest.approx(0.1)
    assert poly_lr(1.0, 0.0, iteration=9, warmup=10) == pytest.approx(1.0)
    assert poly_lr(1.0, 0.5) == pytest.approx(0.5 ** 0.9)
    assert poly_lr(1.0, 1.0) == 0.0


def test_time_limit_drives_the_schedule(data_root, tmp_path):
    args = build_parser().parse_args(common(data_root, tmp_path, "--max-iters", "1000", "--time-limit", "100",
                                            "--blocks-fraction", "0.25", "--block-size", "64"))
    trainer = Trainer(args)
    assert trainer.progress(elapsed=50.0) == pytest.approx(0.5)
    trainer.iteration = 900
    assert trainer.progress(elapsed=50.0) == pytest.approx(0.9)       # whichever is further
    assert not trainer.in_block_phase(0.74) and trainer.in_block_phase(0.75)
    steps = []
    for it in range(10):
        trainer.iteration = it
        steps.append(trainer.block_step(0.8))
    assert sum(steps) == 5 and steps != [True] * 5 + [False] * 5     # --blocks-mix 0.5, interleaved
    assert not trainer.block_step(0.5)


def test_block_finetuning_step_runs_through_segblocks(data_root, tmp_path):
    args = build_parser().parse_args(common(data_root, tmp_path, "--blocks", "--tau", "0.3",
                                            "--block-size", "64", "--crop", "128", "--max-iters", "2"))
    trainer = Trainer(args)
    calls = []
    plan = trainer.segblocks._plan
    trainer.segblocks._plan = lambda x, layout: calls.append(layout.grid.clone()) or plan(x, layout)
    train_loader, val_loader = trainer.loaders()
    x, y = next(iter(train_loader))
    assert x.dtype == torch.uint8 and x.shape == (2, 128, 128, 3)        # normalised on the device
    x, y = trainer._to_device(x, y, train=True)
    assert x.shape == (2, 3, 128, 128) and x.dtype == torch.float32 and y.dtype == torch.int64
    before = trainer.model.backbone.conv1.weight.detach().clone()
    loss = trainer.train_step(x, y)
    assert torch.isfinite(loss) and trainer.iteration == 1 and trainer.block_step(trainer.progress())
    assert len(calls) == 1 and calls[0].shape == (2, 2, 2)
    assert not torch.equal(before, trainer.model.backbone.conv1.weight)
    result = trainer.validate(val_loader, blocks=True)
    assert 0.0 <= result["highres_fraction"] <= 1.0 and result["tau"] == 0.3


@pytest.mark.parametrize("cache", ["0", "3"])
def test_synthetic_source_trains_without_files(tmp_path, cache):
    assert main(["--synthetic", "--size", "64x128", "--crop", "64x128", "--batch-size", "2",
                 "--max-iters", "2", "--val-images", "1", "--workers", "0", "--out", str(tmp_path),
                 "--cache-frames", cache, "--metrics-json", str(tmp_path / "m.json")]) == 0
    m = json.load(open(tmp_path / "m.json"))
    assert m["val"]["synthetic_seeds"] == [1_000_000, 1_000_001]
    assert m["iterations"] == 2 and m["ended_by"] == "max_iters"
    if cache != "0":
        assert records(tmp_path, "cache")[0]["frames"] == 3


# -- original SwiftNet / SegBlocks state dicts --------------------------------------------


def stem(net, x):
    return net.backbone.bn1(net.backbone.conv1(x))


def normalized(rgb01, mean, std):
    return (rgb01 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_segblocks_state_dict_with_dataparallel_prefix_loads():
    torch.manual_seed(0)
    original = randomize_batchnorm(build_model("swiftnet_rn18", 19)).eval()
    sd = {}
    for k, v in original.state_dict().items():
        # SegBlocks' SwiftNet keeps spp/upsample beside the backbone, wrapped in SegBlocksModel.net
        k = k.replace("backbone.spp.", "spp.").replace("backbone.upsample.", "upsample.")
        sd["module.net." + k] = v
    sd["module.policy.conv.weight"] = torch.zeros(1)          # learned policy: no counterpart
    net = build_model("swiftnet_rn18", 19).eval()
    load_original_state_dict(net, {"state_dict": sd, "progress": {"epoch": 3}})
    for name, p in net.named_parameters():
        if name != "backbone.conv1.weight":
            torch.testing.assert_close(p, original.state_dict()[name])
    # SegBlocks normalised with Cityscapes statistics; the mapped stem gives the same
    # features on our (ImageNet-normalised) input, away from the zero-padded border
    rgb = torch.rand(1, 3, 32, 48)
    ours = stem(net, normalized(rgb, IMAGENET_MEAN, IMAGENET_STD))
    theirs = stem(original, normalized(rgb, CITYSCAPES_MEAN, CITYSCAPES_STD))
    torch.testing.assert_close(ours[..., 2:-2, 2:-2], theirs[..., 2:-2, 2:-2], rtol=1e-4, atol=1e-4)


def test_swiftnet_state_dict_with_normalisation_buffers_loads():
    torch.manual_seed(1)
    original = randomize_batchnorm(build_model("swiftnet_rn18", 19)).eval()
    sd = dict(original.state_dict())
    mean, std = torch.tensor([73.1584, 82.9090, 72.3924]), torch.tensor([44.9149, 46.1529, 45.3192])
    sd["backbone.img_mean"], sd["backbone.img_std"] = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)
    del sd["backbone.bn1.num_batches_tracked"]                 # very old checkpoints lack it
    mapped = map_original_state_dict({"model": sd})
    assert "backbone.img_mean" not in mapped and int(mapped["backbone.bn1.num_batches_tracked"]) == 0
    net = build_model("swiftnet_rn18", 19).eval()
    load_original_state_dict(net, sd)
    rgb255 = torch.rand(1, 3, 32, 48) * 255
    ours = stem(net, normalized(rgb255 / 255, IMAGENET_MEAN, IMAGENET_STD))
    theirs = stem(original, (rgb255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    torch.testing.assert_close(ours[..., 2:-2, 2:-2], theirs[..., 2:-2, 2:-2], rtol=1e-4, atol=1e-4)


def test_mismatched_state_dict_lists_missing_and_unexpected_keys():
    sd = {"module." + k: v for k, v in build_model("swiftnet_rn18", 19).state_dict().items()}
    del sd["module.logits.conv.weight"]
    sd["module.border_logits.conv.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_original_state_dict(build_model("swiftnet_rn18", 19), sd)
    text = str(err.value)
    assert "missing keys: logits.conv.weight" in text
    assert "unexpected keys: border_logits.conv.weight" in text
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_original_state_dict(build_model("swiftnet_rn18", 19), build_model("swiftnet_rn18", 7).state_dict())
