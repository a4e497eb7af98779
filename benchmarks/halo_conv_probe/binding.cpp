// Python binding of the halo-tile convolution probe (benchmarks/halo_conv_probe.py).
#include <ATen/cuda/CUDAContext.h>
#include <torch/extension.h>

#include <string>
#include <vector>

#include "problem.h"

namespace {

using ConvFn = int (*)(const halo_probe::Problem&, cudaStream_t);

const std::vector<std::pair<std::string, ConvFn>>& configs() {
  static const std::vector<std::pair<std::string, ConvFn>> all = {
#define HALO_CONFIG(name, side, units, nb, stages, resident_b, tma_epilogue, prefetch_a, gather, stride) \
  {#name, halo_probe::halo_conv_##name},
#include "configs.inc"
#undef HALO_CONFIG
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

// [T, N, s, s] with channels contiguous (stride 1 on dim 1): its tile, y, x strides
void pixel_strides(const at::Tensor& t, int64_t tiles, int64_t n, int64_t side, const char* name, int64_t* out) {
  check_half(t, name);
  TORCH_CHECK(t.dim() == 4 && t.size(0) == tiles && t.size(1) == n && t.size(2) == side && t.size(3) == side &&
                  t.stride(1) == 1,
              name, " must be [T, N, s, s] with channels contiguous");
  TORCH_CHECK(t.stride(0) % 8 == 0 && t.stride(2) % 8 == 0 && t.stride(3) % 8 == 0, name,
              ": pixel strides must be multiples of 8 elements");
  out[0] = t.stride(0);
  out[1] = t.stride(2);
  out[2] = t.stride(3);
}

// The weight, bias, output and residual of either form into p (T tiles of side s, C in,
// stride 1 or 2: output side s / stride): checked, as the kernels read them
void set_operands(const at::Tensor& weight, const at::Tensor& bias, const c10::optional<at::Tensor>& residual,
                  const at::Tensor& out, int64_t tiles, int64_t c, int64_t side, int64_t stride,
                  halo_probe::Problem& p) {
  TORCH_CHECK((stride == 1 || stride == 2) && side % stride == 0, "stride 1, or 2 on an even side");
  check_half(weight, "weight");
  check_half(bias, "bias");
  const int64_t n = weight.size(0);
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == c && weight.size(2) == 3 && weight.size(3) == 3 &&
                  weight.is_contiguous(at::MemoryFormat::ChannelsLast),
              "weight must be [N, C, 3, 3] channels_last");
  TORCH_CHECK(bias.numel() == n && bias.is_contiguous(), "bias must be [N]");
  pixel_strides(out, tiles, n, side / stride, "out", p.out_strides);
  if (residual.has_value()) {
    pixel_strides(*residual, tiles, n, side / stride, "residual", p.res_strides);
    p.residual = residual->data_ptr();
  }
  p.weight = weight.data_ptr();
  p.bias = bias.data_ptr();
  p.out = out.data_ptr();
  p.tiles = int(tiles);
  p.side = int(side);
  p.stride = int(stride);
  p.c = int(c);
  p.n = int(n);
  p.sm_count = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
}

void launch(const halo_probe::Problem& p, int64_t config) {
  TORCH_CHECK(config >= 0 && config < int64_t(configs().size()), "config out of range");
  const int rc = configs()[config].second(p, at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(rc == 0, "halo conv ", configs()[config].first, " failed: ", rc);
}

// out [T, N, s/stride, s/stride] = relu(conv3x3(padded [T, C, s+2, s+2], stride) + bias +
// residual); see halo_conv.cuh
void conv(const at::Tensor& padded, const at::Tensor& weight, const at::Tensor& bias,
          const c10::optional<at::Tensor>& residual, at::Tensor out, int64_t config, int64_t stride) {
  check_half(padded, "padded");
  TORCH_CHECK(padded.dim() == 4 && padded.size(2) == padded.size(3) && padded.size(2) >= 3 &&
                  padded.is_contiguous(at::MemoryFormat::ChannelsLast),
              "padded must be [T, C, s+2, s+2] channels_last");
  halo_probe::Problem p{};
  set_operands(weight, bias, residual, out, padded.size(0), padded.size(1), padded.size(2) - 2, stride, p);
  p.padded = padded.data_ptr();
  launch(p, config);
}

// out [T, N, s, s] = relu(conv3x3 of the units' BlockPad-ed tiles, gathered through the halo
// index from source [rows, C] + bias + residual); mean_rows ([B, 4] int32, the halo's): the
// kernel makes the frames' 2x2 means itself (source rows unit_rows .. unit_rows + B - 1 are
// not read); without it they must be in the source (zero row: unit_rows + means)
void gather_conv(const at::Tensor& source, const at::Tensor& index, const c10::optional<at::Tensor>& mean_rows,
                 int64_t unit_rows, int64_t zero_row, const at::Tensor& weight, const at::Tensor& bias,
                 const c10::optional<at::Tensor>& residual, at::Tensor out, int64_t config, int64_t stride) {
  check_half(source, "source");
  TORCH_CHECK(source.dim() == 2 && source.is_contiguous() && source.size(0) > zero_row, "source [rows, C] contiguous");
  TORCH_CHECK(index.is_cuda() && index.scalar_type() == at::kInt && index.is_contiguous() && index.dim() == 3 &&
                  index.size(1) == index.size(2),
              "index must be [T, s+2, s+2] int32");
  halo_probe::Problem p{};
  set_operands(weight, bias, residual, out, index.size(0), source.size(1), index.size(1) - 2, stride, p);
  if (mean_rows.has_value()) {
    TORCH_CHECK(mean_rows->is_cuda() && mean_rows->scalar_type() == at::kInt && mean_rows->is_contiguous() &&
                    mean_rows->dim() == 2 && mean_rows->size(1) == 4 && unit_rows + mean_rows->size(0) == zero_row,
                "mean_rows must be [zero_row - unit_rows, 4] int32");
    p.mean_rows = mean_rows->data_ptr<int>();
  }
  p.source = source.data_ptr();
  p.index = index.data_ptr<int>();
  p.unit_rows = unit_rows;
  p.zero_row = zero_row;
  launch(p, config);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("configs", &config_names, "the configuration names, in index order");
  m.def("conv", &conv, "halo-tile 3x3 convolution of padded tiles (probe)", py::arg("padded"), py::arg("weight"),
        py::arg("bias"), py::arg("residual"), py::arg("out"), py::arg("config"), py::arg("stride") = 1);
  m.def("gather_conv", &gather_conv, "halo-tile 3x3 convolution of units gathered through a halo index",
        py::arg("source"), py::arg("index"), py::arg("mean_rows"), py::arg("unit_rows"), py::arg("zero_row"),
        py::arg("weight"), py::arg("bias"), py::arg("residual"), py::arg("out"), py::arg("config"),
        py::arg("stride") = 1);
}
