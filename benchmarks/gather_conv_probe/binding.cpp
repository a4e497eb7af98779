// Python binding of the halo-gathering convolution probe (benchmarks/gather_conv_probe.py).
#include <ATen/cuda/CUDAContext.h>
#include <torch/extension.h>

#include <string>
#include <vector>

#include "problem.h"

namespace {

using ConvFn = int (*)(const gather_probe::Problem&, cudaStream_t);

const std::vector<std::pair<std::string, ConvFn>>& configs() {
  static const std::vector<std::pair<std::string, ConvFn>> all = {
#define GATHER_CONFIG(name, m, n, k, load_groups, pingpong, cooperative) {#name, gather_probe::gather_conv_##name},
#include "configs.inc"
#undef GATHER_CONFIG
  };
  return all;
}

std::vector<std::string> config_names() {
  std::vector<std::string> names;
  for (const auto& c : configs()) names.push_back(c.first);
  return names;
}

void check_half(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.scalar_type() == at::kHalf, name, " must be a CUDA float16 tensor");
}

// out [m, n] (rows of any stride, columns packed) = relu(conv3x3 of the units through the
// halo index + bias + residual); see gather_conv.cuh
// mean_rows ([B, 4] int32, the halo's): the kernel makes the frames' means itself (source rows
// unit_rows .. unit_rows + B - 1 are not read); without it they must be in the source
void conv(const at::Tensor& source, const at::Tensor& index, const at::Tensor& weight, const at::Tensor& bias,
          const c10::optional<at::Tensor>& residual, at::Tensor out, int64_t tiles, int64_t side, int64_t stride,
          int64_t config, const c10::optional<at::Tensor>& mean_rows, int64_t unit_rows) {
  check_half(source, "source");
  check_half(weight, "weight");
  check_half(bias, "bias");
  check_half(out, "out");
  TORCH_CHECK(index.is_cuda() && index.scalar_type() == at::kInt && index.is_contiguous(), "index: int32 CUDA");
  TORCH_CHECK(source.dim() == 2 && source.is_contiguous(), "source must be [rows, C] contiguous");
  const int64_t c = source.size(1), n = weight.size(0), m = tiles * side * side;
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == c && weight.size(2) == 3 && weight.size(3) == 3 &&
                  weight.is_contiguous(at::MemoryFormat::ChannelsLast),
              "weight must be [N, C, 3, 3] channels_last");
  const int64_t si = side * stride + 2;
  TORCH_CHECK(index.numel() == tiles * si * si, "index must have tiles * (side*stride + 2)^2 entries");
  TORCH_CHECK(bias.numel() == n && bias.is_contiguous(), "bias must be [N]");
  TORCH_CHECK(out.dim() == 2 && out.size(0) == m && out.size(1) == n && out.stride(1) == 1, "out must be [M, N]");
  gather_probe::Problem p{};
  p.source = source.data_ptr();
  p.index = index.data_ptr<int>();
  p.weight = weight.data_ptr();
  p.bias = bias.data_ptr();
  p.out = out.data_ptr();
  p.out_ld = out.stride(0);
  if (residual.has_value()) {
    check_half(*residual, "residual");
    TORCH_CHECK(residual->dim() == 2 && residual->size(0) == m && residual->size(1) == n && residual->stride(1) == 1,
                "residual must be [M, N]");
    p.residual = residual->data_ptr();
    p.residual_ld = residual->stride(0);
  }
  p.unit_rows = unit_rows;
  p.zero_row = unit_rows;
  if (mean_rows.has_value()) {
    TORCH_CHECK(mean_rows->is_cuda() && mean_rows->scalar_type() == at::kInt && mean_rows->is_contiguous() &&
                    mean_rows->dim() == 2 && mean_rows->size(1) == 4,
                "mean_rows must be [B, 4] int32");
    TORCH_CHECK(unit_rows + mean_rows->size(0) < source.size(0), "source too short for the means");
    p.mean_rows = mean_rows->data_ptr<int>();
    p.zero_row = unit_rows + mean_rows->size(0);
  }
  p.tiles = int(tiles);
  p.side = int(side);
  p.stride = int(stride);
  p.c = int(c);
  p.n = int(n);
  p.sm_count = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  TORCH_CHECK(config >= 0 && config < int64_t(configs().size()), "config out of range");
  const int rc = configs()[config].second(p, at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(rc == 0, "gather conv ", configs()[config].first, " failed: ", rc);
}

void means_(at::Tensor source, const at::Tensor& mean_rows, int64_t unit_rows) {
  check_half(source, "source");
  TORCH_CHECK(source.dim() == 2 && source.is_contiguous() && source.size(1) % 8 == 0, "source [rows, C], C % 8 == 0");
  TORCH_CHECK(mean_rows.is_cuda() && mean_rows.scalar_type() == at::kInt && mean_rows.is_contiguous() &&
                  mean_rows.dim() == 2 && mean_rows.size(1) == 4,
              "mean_rows must be [B, 4] int32");
  gather_probe::halo_means(source.data_ptr(), mean_rows.data_ptr<int>(), int(mean_rows.size(0)), unit_rows,
                           int(source.size(1)), at::cuda::getCurrentCUDAStream());
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("configs", &config_names);
  m.def("conv", &conv);
  m.def("means_", &means_);
}
