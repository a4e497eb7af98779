"""One setup for pip and colcon (ament_python).

Builds the native block-op extension ``segblocks_core._C`` from ``csrc/`` with
``torch.utils.cpp_extension``: CUDA kernels when ``FORCE_CUDA=1`` or when torch sees a GPU
and ``CUDA_HOME`` is set, CPU kernels otherwise. ``SEGBLOCKS_NO_EXTENSION=1`` skips the
extension (the pure-PyTorch reference ops are used then). torch must be installed before
building (``pip install --no-build-isolation``), so a bare ``torch`` requirement never
pulls a different build into an isolated environment.
"""

import importlib.util
import os
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
PACKAGE = "segblocks_ros"


def _sources(pattern: str) -> list[str]:
    """Absolute paths: colcon builds out of tree."""
    return sorted(str(p) for p in ROOT.glob(pattern))


# Default GPU architectures: Jetson Orin (8.7), Ada (8.9), Hopper (9.0). Override with
# TORCH_CUDA_ARCH_LIST, e.g. "9.0" alone on the H100 host to build faster.
DEFAULT_CUDA_ARCHS = "8.7;8.9;9.0"


def cutlass_root():
    """The CUTLASS source folder (``include/cutlass/cutlass.h`` and ``tools/util/include``):
    ``SEGBLOCKS_CUTLASS_DIR`` (a CUTLASS 3.x/4.x checkout), else the ``nvidia-cutlass``
    wheel's ``cutlass_library/source``; None without either."""
    env = os.environ.get("SEGBLOCKS_CUTLASS_DIR")
    if env:
        root = Path(env).resolve()
        if not (root / "include" / "cutlass" / "cutlass.h").is_file():
            raise RuntimeError(f"SEGBLOCKS_CUTLASS_DIR={env} has no include/cutlass/cutlass.h")
        return root
    spec = importlib.util.find_spec("cutlass_library")
    if spec is not None and spec.origin:
        root = Path(spec.origin).resolve().parent / "source"
        if (root / "include" / "cutlass" / "cutlass.h").is_file():
            return root
    return None


def cutlass_extension(CUDAExtension, include_dirs: list[str]):
    """``segblocks_core._cutlass``: the CUTLASS kernels of ``conv_into_`` (wgmma + TMA, so
    sm_90a only: its own extension with its own -gencode, the rest of the CUDA code keeps
    TORCH_CUDA_ARCH_LIST). Built when the CUDA build includes Hopper (9.0) and CUTLASS is
    found (:func:`cutlass_root`); ``SEGBLOCKS_NO_CUTLASS=1`` skips it."""
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS).replace(" ", ";").split(";")
    if os.environ.get("SEGBLOCKS_NO_CUTLASS", "0") == "1" or not any(a.startswith("9.0") for a in archs):
        return None
    root = cutlass_root()
    if root is None:
        print("segblocks: CUTLASS not found (pip install nvidia-cutlass, or SEGBLOCKS_CUTLASS_DIR): "
              "building without the CUTLASS convolutions")
        return None
    print(f"segblocks: building the CUTLASS convolutions (sm_90a) with {root}")
    folder = "csrc/ops/cuda/cutlass"
    return CUDAExtension(
        "segblocks_core._cutlass", _sources(f"{folder}/*.cu") + _sources(f"{folder}/*.cpp"),
        include_dirs=include_dirs + [str(root / "include"), str(root / "tools" / "util" / "include")],
        extra_compile_args={"cxx": ["-O3"],
                            "nvcc": ["-O3", "--expt-relaxed-constexpr", "-DNDEBUG",
                                     "-gencode=arch=compute_90a,code=sm_90a",
                                     # CUTLASS uses cuda_fp16's operators, which torch's flags hide
                                     "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                                     "-U__CUDA_NO_HALF2_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__"]},
    )


def get_extensions():
    """The native extension ``segblocks_core._C`` (CUDA or CPU-only), or none.

    CUDA kernels are built when ``FORCE_CUDA=1`` or when torch sees a GPU and ``CUDA_HOME``
    is set; ``SEGBLOCKS_NO_EXTENSION=1`` builds nothing (the reference ops are used then).
    """
    if os.environ.get("SEGBLOCKS_NO_EXTENSION", "0") == "1":
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        print("segblocks: torch is not installed; building without the native extension")
        return [], {}
    sources = _sources("csrc/*.cpp") + _sources("csrc/ops/cpu/*.cpp")
    if not sources:
        return [], {}
    force_cuda = os.environ.get("FORCE_CUDA", "0") == "1"
    use_cuda = force_cuda or (torch.cuda.is_available() and CUDA_HOME is not None)
    # No -std flag: torch adds the standard its own headers need (C++17 up to torch 2.11,
    # C++20 later). -fopenmp in both builds: at::parallel_for in the CPU kernels is an
    # OpenMP region compiled into our objects.
    cxx_flags = ["-O3", "-fopenmp"]
    link_flags = ["-fopenmp"]
    include_dirs = [str(ROOT / "csrc")]
    if use_cuda:
        sources += _sources("csrc/ops/cuda/*.cu") + _sources("csrc/ops/cuda/*.cpp")
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
        print(f"segblocks: building CPU + CUDA kernels for TORCH_CUDA_ARCH_LIST="
              f"{os.environ['TORCH_CUDA_ARCH_LIST']}")
        ext = CUDAExtension(
            "segblocks_core._C", sources, include_dirs=include_dirs,
            define_macros=[("SEGBLOCKS_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=link_flags,
        )
        extra = cutlass_extension(CUDAExtension, include_dirs)
        if extra is not None:
            return [ext, extra], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}
    else:
        print("segblocks: building CPU kernels (FORCE_CUDA=1 for the CUDA kernels)")
        ext = CppExtension(
            "segblocks_core._C", sources, include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags,
        )
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = get_extensions()

setup(
    name=PACKAGE,
    version="0.1.0",
    description="SegBlocks adaptive-resolution segmentation (SwiftNet) as a ROS 2 node",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["segblocks_core", "segblocks_core.*", "segblocks_ros", "segblocks_ros.*"]),
    package_data={"segblocks_core": ["weights/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [str(ROOT / "resource" / PACKAGE)]),
        (f"share/{PACKAGE}", [str(ROOT / "package.xml")]),
        (f"share/{PACKAGE}/launch", _sources("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", _sources("config/*.yaml")),
    ],
    # torch is deliberately not pinned here: robots bring their own (CUDA/Jetson) build.
    install_requires=["numpy", "torch>=2.4", "pillow", "pyyaml"],
    extras_require={
        "bag": ["rosbags>=0.10", "matplotlib"],
        "test": ["pytest", "rosbags>=0.10", "matplotlib"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "segblocks_node = segblocks_ros.node:main",
            "eval_bag = segblocks_ros.eval_bag:main",
            "replay_bag = segblocks_ros.replay_bag:main",
            "segblocks-eval-bag = segblocks_ros.eval_bag:main",
            "segblocks-replay-bag = segblocks_ros.replay_bag:main",
            "segblocks-train = segblocks_core.train:main",
        ],
    },
)
