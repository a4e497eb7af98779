"""The node as users start it: the executable with ``--ros-args --params-file`` (what
``ros2 launch`` passes), start-up failures as exit codes, and the launch file (launch and
launch_ros are not installed here: its structure and argument handling are checked from
its source)."""

import ast
import math
import os
import py_compile
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from conftest_ros import flat_and_textured, image_msg, ros, stats_values, wait_until  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "segblocks.yaml"
LAUNCH = ROOT / "launch" / "segblocks.launch.py"


def node_command(*ros_args: str) -> list:
    return [sys.executable, "-m", "segblocks_ros.node", "--ros-args", *ros_args]


def node_env() -> dict:
    env = dict(os.environ)  # carries the test's private ROS_DOMAIN_ID
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_node_expecting_failure(*ros_args: str) -> tuple:
    proc = subprocess.run(node_command(*ros_args), env=node_env(), capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


def test_params_file_configures_the_node_and_sigint_stops_it(ros, tmp_path):
    ns = ros.namespace()
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(
        "/**/segblocks:\n  ros__parameters:\n"
        "    tau: 0.45\n    overlay_alpha: 0.25\n    block_size: 64\n"
        "    checkpoint: random\n    device: cpu\n")
    # later files override earlier ones, as with launch's parameters=[file, overrides];
    # the node runs in a namespace, as with the launch file's namespace argument
    proc = subprocess.Popen(
        node_command("--params-file", str(CONFIG), "--params-file", str(overrides),
                     "-r", f"__ns:={ns}"),
        env=node_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        name = f"{ns}/segblocks"
        wait_until(lambda: ros.helper.count_subscribers(f"{ns}/image") > 0 or proc.poll() is not None,
                   90, "the node to start")
        assert proc.poll() is None, proc.stdout.read()
        config = yaml.safe_load(CONFIG.read_text())["/**/segblocks"]["ros__parameters"]
        changed = yaml.safe_load(overrides.read_text())["/**/segblocks"]["ros__parameters"]
        values = ros.get_parameters(name, list(config))
        for key, expected in {**config, **changed}.items():
            got = values[key]
            if expected == []:
                assert got in (None, []), key  # an empty YAML list leaves an array unset
            elif isinstance(expected, float):
                assert math.isclose(got, expected), key
            else:
                assert got == expected, (key, got, expected)

        # and it serves frames with those values
        stats = ros.inbox(DiagnosticArray, f"{ns}/segmentation/stats")
        pub = ros.publisher(Image, f"{ns}/image")
        wait_until(lambda: pub.get_subscription_count() > 0, 10, "the node's subscription")
        msg = image_msg(flat_and_textured(128, 256), "cli_frame")
        for _ in range(10):
            pub.publish(msg)
            try:
                v = stats_values(stats.frame("cli_frame", timeout=3))
                break
            except AssertionError:
                continue
        assert float(v["tau"]) == pytest.approx(0.45)
        assert (int(v["blocks_total"]), float(v["highres_fraction"])) == (8, 0.5)  # 64-px blocks
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "RANDOM WEIGHTS" in out  # the loud warning


@pytest.mark.parametrize("ros_args,needles", [
    (("-p", "checkpoint:=/nonexistent/model.pt", "-p", "device:=cpu"),
     ("cannot start", "does not exist", "checkpoint")),
    (("-p", "tau:=-1.0", "-p", "checkpoint:=random"), ("cannot start", "tau")),
    (("-p", "model:=deeplab", "-p", "checkpoint:=random"), ("cannot start", "swiftnet_rn18")),
])
def test_start_up_failures_exit_non_zero_with_the_reason(ros_args, needles):
    code, out = run_node_expecting_failure(*ros_args)
    assert code == 1, out
    for needle in needles:
        assert needle in out, (needle, out)


def test_cuda_without_gpu_exits_non_zero():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, out = run_node_expecting_failure("-p", "device:=cuda", "-p", "checkpoint:=random")
    assert code == 1 and "no CUDA GPU" in out and "'cpu'" in out, out


def test_config_file_declares_every_parameter():
    from segblocks_ros.node import NODE_NAME

    config = yaml.safe_load(CONFIG.read_text())
    # the node by name in any namespace (launch's namespace argument)
    assert list(config) == [f"/**/{NODE_NAME}"]
    params = config[f"/**/{NODE_NAME}"]["ros__parameters"]
    for name in ("tau", "adaptive", "overlay_alpha", "model", "checkpoint", "num_classes",
                 "class_names", "palette", "device", "precision", "fast_path", "dense_above",
                 "cudnn_benchmark_limit", "warmup_sizes", "block_size",
                 "input_transport", "cameras", "qos_reliability", "max_image_pixels",
                 "batch_window_ms"):
        assert name in params, name
    assert len(params["class_names"]) == params["num_classes"] == 19
    assert len(params["palette"]) == 3 * 19


# -- launch file ---------------------------------------------------------------------------------

def launch_tree():
    py_compile.compile(str(LAUNCH), doraise=True)
    return ast.parse(LAUNCH.read_text())


def calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def test_launch_file_structure():
    tree = launch_tree()
    assert ast.get_docstring(tree)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    declared = [c.args[0].value for c in calls(tree, "DeclareLaunchArgument")]
    assert sorted(declared) == sorted(["namespace", "image_topic", "params_file", "tau", "device",
                                       "input_transport", "use_sim_time"])
    for c in calls(tree, "DeclareLaunchArgument"):
        assert {k.arg for k in c.keywords} >= {"default_value", "description"}
    (node,) = calls(tree, "Node")
    kwargs = {k.arg: k.value for k in node.keywords}
    assert {k: ast.literal_eval(kwargs[k]) for k in ("package", "executable", "name")} == {
        "package": "segblocks_ros", "executable": "segblocks_node", "name": "segblocks"}
    assert {"namespace", "parameters", "remappings"} <= set(kwargs)
    params = kwargs["parameters"]
    assert isinstance(params, ast.List) and len(params.elts) == 2  # [params_file, overrides]
    (share,) = calls(tree, "get_package_share_directory")
    assert ast.literal_eval(share.args[0]) == "segblocks_ros"
    (join,) = [c for c in calls(tree, "join") if share in c.args]
    assert [ast.literal_eval(a) for a in join.args[1:]] == ["config", "segblocks.yaml"]


def test_launch_arguments_become_overrides_and_remappings():
    tree = launch_tree()
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "node_configuration"]
    scope: dict = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(LAUNCH), "exec"), scope)
    configure = scope["node_configuration"]
    defaults = {"namespace": "", "image_topic": "image", "params_file": "x.yaml", "tau": "",
                "device": "", "input_transport": "", "use_sim_time": "false"}
    overrides, remaps = configure(defaults)
    assert overrides == {"use_sim_time": False}  # empty arguments keep the file's values
    assert remaps == [("image", "image"), ("image/compressed", "image/compressed")]
    overrides, remaps = configure({**defaults, "tau": "0.4", "device": "cuda:1",
                                   "input_transport": "compressed", "use_sim_time": "true",
                                   "image_topic": "/front/image_raw"})
    assert overrides == {"use_sim_time": True, "tau": 0.4, "device": "cuda:1",
                         "input_transport": "compressed"}
    assert dict(remaps) == {"image": "/front/image_raw",
                            "image/compressed": "/front/image_raw/compressed"}
    assert configure({**defaults, "image_topic": ""})[1] == []


def test_setup_installs_executable_launch_and_config():
    setup = (ROOT / "setup.py").read_text()
    assert "segblocks_node = segblocks_ros.node:main" in setup
    assert '"launch/*.launch.py"' in setup and '"config/*.yaml"' in setup
    assert (ROOT / "resource" / "segblocks_ros").exists()


# -- make demo -----------------------------------------------------------------------------------

def test_demo_runs_end_to_end_and_writes_pngs(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "segblocks_ros.demo", "--out", str(out), "--device", "cpu",
           "--height", "128", "--width", "256", "--block-size", "64", "--taus", "0.05,0.8",
           "--frames-per-tau", "2", "--scene-frames", "3", "--fps", "10", "--timeout", "120"]
    proc = subprocess.run(cmd, env=node_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GMAC eff / dense" in proc.stdout and "[6/6]" in proc.stdout
    for tag in ("tau0.05", "tau0.80", "dense"):
        for kind in ("input", "block_map", "color_mask"):
            path = out / f"{kind}_{tag}.png"
            assert path.is_file(), path
    summary = __import__("json").loads((out / "summary.json").read_text())
    low, high, dense = summary["phases"]
    assert (low["tau"], high["tau"], dense["adaptive"]) == (0.05, 0.8, False)
    assert low["highres_fraction"] > high["highres_fraction"]
    assert dense["highres_fraction"] == 1.0
    assert high["gmacs_effective"] < low["gmacs_effective"] <= dense["gmacs_effective"]
