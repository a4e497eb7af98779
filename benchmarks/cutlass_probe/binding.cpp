// Python binding of the probe's CUTLASS convolutions (benchmarks/cutlass_conv_probe.py).
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>

#include <string>

// configs.inc (written by the probe script): CONFIG(M, N, K, STAGES) per compiled kernel,
// each defined in its own generated .cu as conv_M_N_K_STAGES.
#define CONFIG(m, n, k, s)                                                                                       \
  int conv_##m##_##n##_##k##_##s(const void*, const void*, const void*, const void*, void*, int, int, int, int, \
                                  int, int, int, int, const int64_t*, const int64_t*, cudaStream_t);
#include "configs.inc"
#undef CONFIG

namespace {

using ConvFn = int (*)(const void*, const void*, const void*, const void*, void*, int, int, int, int, int, int, int,
                       int, const int64_t*, const int64_t*, cudaStream_t);

ConvFn pick(const std::string& tile) {
#define CONFIG(m, n, k, s) \
  if (tile == #m "x" #n "x" #k "_s" #s) return conv_##m##_##n##_##k##_##s;
#include "configs.inc"
#undef CONFIG
  TORCH_CHECK(false, "unknown tile ", tile);
}

// relu(conv2d(x, w, bias, stride, padding 0) + residual) into `out` (an NHWC view: channel
// stride 1, any other strides; it may be the interior of bigger padded tiles).
void conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const c10::optional<at::Tensor>& res,
          at::Tensor out, int64_t stride, const std::string& tile) {
  TORCH_CHECK(x.is_cuda() && x.scalar_type() == at::kHalf && w.scalar_type() == at::kHalf &&
              bias.scalar_type() == at::kHalf && out.scalar_type() == at::kHalf);
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast) && w.is_contiguous(at::MemoryFormat::ChannelsLast) &&
              bias.is_contiguous());
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3), k = w.size(0);
  const int64_t p = (h - w.size(2)) / stride + 1, q = (wd - w.size(3)) / stride + 1;
  TORCH_CHECK(out.sizes() == at::IntArrayRef({n, k, p, q}), "out has shape ", out.sizes());
  TORCH_CHECK(out.stride(1) == 1, "out: channel stride must be 1");
  const int64_t os[3] = {out.stride(0), out.stride(2), out.stride(3)};
  int64_t rs[3] = {0, 0, 0};
  const void* rp = nullptr;
  if (res.has_value()) {
    TORCH_CHECK(res->sizes() == out.sizes() && res->stride(1) == 1 && res->scalar_type() == at::kHalf);
    rs[0] = res->stride(0);
    rs[1] = res->stride(2);
    rs[2] = res->stride(3);
    rp = res->data_ptr();
  }
  const int rc = pick(tile)(x.data_ptr(), w.data_ptr(), bias.data_ptr(), rp, out.data_ptr(), int(n), int(h), int(wd),
                            int(c), int(k), int(w.size(2)), int(w.size(3)), int(stride), os, rs,
                            at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(rc == 0, "cutlass conv ", tile, " failed with code ", rc);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("conv", &conv, "CUTLASS sm90 conv + bias + residual + ReLU into an NHWC view");
}
