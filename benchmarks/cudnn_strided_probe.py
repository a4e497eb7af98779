"""Can cuDNN write a convolution's output straight into the interior of the next
convolution's padded tiles? Then BlockPad would only fill the 1-px ring instead of copying
every map (BlockPad is 0.53 of SegBlocks' 2.5 ms at batch 4, node_profile.py).

PyTorch's cuDNN convolutions always allocate a contiguous output, so this calls cuDNN
directly (legacy API, built here with torch.utils.cpp_extension.load_inline against the
cuDNN that torch uses): cudnnConvolutionBiasActivationForward, relu(conv(x) + bias + z)
(a BasicBlock's second convolution), with y and z strided views. Times (CUDA graph of
--reps calls, fp16 channels_last, the fastest algorithm cudnnFind... reports for each):

  torch      torch.cudnn_convolution_add_relu (contiguous y, z): what the executor runs
  direct     the cuDNN call with contiguous y and z
  strided    the cuDNN call with y, z the interiors of padded tiles
  copy       copying a map into the interior of padded tiles (about BlockPad's cost)

    python benchmarks/cudnn_strided_probe.py [--reps 50] [--json out.json]
"""
import argparse
import os
import sys

import torch
from torch.utils.cpp_extension import load_inline

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core.timing import cuda_graph_median_ms  # noqa: E402
from probe_json import write_probe_json  # noqa: E402  (this folder: the script's own)

CPP = r"""
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <cudnn.h>
#include <vector>

#define CK(x) do { cudnnStatus_t s_ = (x); TORCH_CHECK(s_ == CUDNN_STATUS_SUCCESS, #x, ": ", cudnnGetErrorString(s_)); } while (0)

static cudnnHandle_t handle() {
  static cudnnHandle_t h = nullptr;
  if (h == nullptr) CK(cudnnCreate(&h));
  CK(cudnnSetStream(h, at::cuda::getCurrentCUDAStream()));
  return h;
}

struct Descs {
  cudnnTensorDescriptor_t x, y, z, b;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t c;
  cudnnActivationDescriptor_t a;
  Descs(const at::Tensor& xt, const at::Tensor& wt, const at::Tensor& bt, const at::Tensor& zt, const at::Tensor& yt) {
    CK(cudnnCreateTensorDescriptor(&x)); CK(cudnnCreateTensorDescriptor(&y));
    CK(cudnnCreateTensorDescriptor(&z)); CK(cudnnCreateTensorDescriptor(&b));
    CK(cudnnCreateFilterDescriptor(&w)); CK(cudnnCreateConvolutionDescriptor(&c));
    CK(cudnnCreateActivationDescriptor(&a));
    set(x, xt); set(y, yt); set(z, zt);
    int bd[4] = {1, (int)bt.size(0), 1, 1}, bs[4] = {(int)bt.size(0), 1, 1, 1};
    CK(cudnnSetTensorNdDescriptor(b, CUDNN_DATA_HALF, 4, bd, bs));
    CK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_HALF, CUDNN_TENSOR_NHWC, wt.size(0), wt.size(1), wt.size(2), wt.size(3)));
    CK(cudnnSetConvolution2dDescriptor(c, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CK(cudnnSetConvolutionMathType(c, CUDNN_TENSOR_OP_MATH));
    CK(cudnnSetActivationDescriptor(a, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
  }
  static void set(cudnnTensorDescriptor_t d, const at::Tensor& t) {
    int dims[4], strides[4];
    for (int i = 0; i < 4; ++i) { dims[i] = (int)t.size(i); strides[i] = (int)t.stride(i); }
    CK(cudnnSetTensorNdDescriptor(d, CUDNN_DATA_HALF, 4, dims, strides));
  }
  ~Descs() {
    cudnnDestroyTensorDescriptor(x); cudnnDestroyTensorDescriptor(y); cudnnDestroyTensorDescriptor(z);
    cudnnDestroyTensorDescriptor(b); cudnnDestroyFilterDescriptor(w); cudnnDestroyConvolutionDescriptor(c);
    cudnnDestroyActivationDescriptor(a);
  }
};

// the fastest algorithm cudnnFind reports for these operands, and its time (ms)
std::vector<double> find_algo(at::Tensor x, at::Tensor w, at::Tensor b, at::Tensor z, at::Tensor y) {
  Descs d(x, w, b, z, y);
  auto ws = at::empty({(int64_t)1 << 28}, x.options().dtype(at::kByte));
  cudnnConvolutionFwdAlgoPerf_t perf[16];
  int n = 0;
  CK(cudnnFindConvolutionForwardAlgorithmEx(handle(), d.x, x.data_ptr(), d.w, w.data_ptr(), d.c, d.y, y.data_ptr(),
                                            16, &n, perf, ws.data_ptr(), ws.numel()));
  std::vector<double> statuses;  // none succeeded: -1, then (algo, status) of each
  for (int i = 0; i < n; ++i) {
    if (perf[i].status == CUDNN_STATUS_SUCCESS) return {(double)perf[i].algo, (double)perf[i].time, (double)perf[i].memory};
    statuses.push_back((double)perf[i].algo);
    statuses.push_back((double)perf[i].status);
  }
  statuses.insert(statuses.begin(), -1.0);
  return statuses;
}

// y = relu(conv(x, w) + b + z), y and z any strides
void conv_bias_add_relu(at::Tensor x, at::Tensor w, at::Tensor b, at::Tensor z, at::Tensor y, int64_t algo,
                        at::Tensor ws) {
  Descs d(x, w, b, z, y);
  const float one = 1.f;
  CK(cudnnConvolutionBiasActivationForward(handle(), &one, d.x, x.data_ptr(), d.w, w.data_ptr(), d.c,
                                           (cudnnConvolutionFwdAlgo_t)algo, ws.data_ptr(), ws.numel(), &one,
                                           d.z, z.data_ptr(), d.b, b.data_ptr(), d.a, d.y, y.data_ptr()));
}
"""


def load_cudnn_extension(name: str, source: str, functions: list[str]):
    """Builds C++ ``source`` (torch.utils.cpp_extension.load_inline) against the cuDNN
    torch runs with (the nvidia-cudnn wheel's headers and library). Shared with
    cudnn_graph_probe.py."""
    import nvidia.cudnn
    root = list(nvidia.cudnn.__path__)[0]
    lib = os.path.join(root, "lib")
    so = sorted(f for f in os.listdir(lib) if f.startswith("libcudnn.so"))[0]
    return load_inline(name, source, functions=functions, extra_include_paths=[os.path.join(root, "include")],
                       extra_ldflags=[os.path.join(lib, so)], with_cuda=True, verbose=False)


def block_operands(n: int, c: int, u: int):
    """A BasicBlock's second convolution on ``n`` units of ``u`` px and ``c`` channels
    (fp16 channels_last): padded input, weight, bias, the residual packed and as the
    interior of padded tiles, and the output packed, its padded tiles (zeros) and their
    interior. Shared with cudnn_graph_probe.py."""
    cl = torch.channels_last

    def t(*shape):
        return torch.randn(*shape, device="cuda", dtype=torch.half).to(memory_format=cl)
    xp = t(n, c, u + 2, u + 2)
    w = (torch.randn(c, c, 3, 3, device="cuda", dtype=torch.half) * 0.03).to(memory_format=cl)
    b = torch.randn(c, device="cuda", dtype=torch.half)
    zc = t(n, c, u, u)
    zp = t(n, c, u + 2, u + 2)
    zp[:, :, 1:-1, 1:-1] = zc
    yc = torch.empty_like(zc)
    yp = torch.zeros_like(zp)
    return xp, w, b, zc, zp[:, :, 1:-1, 1:-1], yc, yp, yp[:, :, 1:-1, 1:-1]


def graph_time_us(fn, reps):
    return cuda_graph_median_ms(fn, reps) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    ext = load_cudnn_extension("cudnn_strided_probe", CPP, ["find_algo", "conv_bias_add_relu"])
    print(torch.cuda.get_device_name(dev), torch.__version__, "cuDNN", torch.backends.cudnn.version())
    rows = []
    # (name, units at 40% high-res: 4 Nh + Nl, channels, unit side)
    for name, n, c, u in (("b1 layer1", 281, 64, 16), ("b4 layer1", 1127, 64, 16), ("b1 layer2", 281, 128, 8),
                          ("b4 layer2", 1127, 128, 8), ("b1 layer3", 281, 256, 4), ("b4 layer3", 1127, 256, 4),
                          ("b4 decoder", 1127, 128, 16)):
        xp, w, b, zc, zv, yc, yp, yv = block_operands(n, c, u)
        with torch.inference_mode():
            want = torch.cudnn_convolution_add_relu(xp, w, zc, 1.0, b, (1, 1), (0, 0), (1, 1), 1)
            a_direct = ext.find_algo(xp, w, b, zc, yc)
            a_strided = ext.find_algo(xp, w, b, zv, yv)
            if a_strided[0] < 0:  # no algorithm writes this output: say why, per algorithm
                print(f"{name}: no cuDNN algorithm takes the strided output; (algo, status): "
                      f"{[(int(a), int(s)) for a, s in zip(a_strided[1::2], a_strided[2::2])]}")
                rows.append({"case": name, "units": n, "channels": c, "unit_side": u,
                             "strided": "no algorithm", "statuses": a_strided[1:]})
                continue
            ws = torch.empty(max(int(a_direct[2]), int(a_strided[2]), 1), device=dev, dtype=torch.uint8)
            ext.conv_bias_add_relu(xp, w, b, zv, yv, int(a_strided[0]), ws)
            err = (yv.float() - want.float()).abs().max().item()
            ring_untouched = yp[:, :, 0].abs().max().item() == 0
            t_torch = graph_time_us(lambda: torch.cudnn_convolution_add_relu(xp, w, zc, 1.0, b, (1, 1), (0, 0),
                                                                             (1, 1), 1), args.reps)
            t_direct = graph_time_us(lambda: ext.conv_bias_add_relu(xp, w, b, zc, yc, int(a_direct[0]), ws),
                                     args.reps)
            t_strided = graph_time_us(lambda: ext.conv_bias_add_relu(xp, w, b, zv, yv, int(a_strided[0]), ws),
                                      args.reps)
            t_copy = graph_time_us(lambda: yv.copy_(zc), args.reps)
        row = {"case": name, "units": n, "channels": c, "unit_side": u, "torch_us": t_torch,
               "direct_us": t_direct, "strided_us": t_strided, "copy_us": t_copy,
               "algo_direct": a_direct[0], "algo_strided": a_strided[0], "max_abs_diff": err,
               "ring_untouched": ring_untouched}
        rows.append(row)
        print(f"{name:10s} {n:5d} units {c:3d}ch {u:2d}px: torch {t_torch:6.1f}  direct {t_direct:6.1f}  "
              f"strided {t_strided:6.1f}  copy {t_copy:6.1f} us  (algo {a_direct[0]:.0f}/{a_strided[0]:.0f}, "
              f"diff {err:.1e}, ring untouched {ring_untouched})")
    write_probe_json(args.json, rows=rows)


if __name__ == "__main__":
    main()
