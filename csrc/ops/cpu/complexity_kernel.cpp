// cell_complexity on the CPU: the element function of ops/complexity.h (shared with the
// CUDA kernel) in an at::parallel_for loop over cells.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/complexity.h"
#include "ops/cpu/block_copy.h"

namespace segblocks {
namespace cpu {
namespace {

at::Tensor cell_complexity_kernel(const at::Tensor& x, int64_t channels, int64_t factor, double floor) {
  check_cell_complexity_args(x, channels, factor);
  const int64_t ch = x.size(2) / factor, cw = x.size(3) / factor;
  at::Tensor out = at::empty({x.size(0), ch, cw}, x.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_cell_complexity_cpu", [&] {
    const CellComplexityParams<scalar_t, Div> prm{x.const_data_ptr<scalar_t>(), strides_of(x),
                                                  out.mutable_data_ptr<float>(), Div(cw), Div(ch), channels,
                                                  factor, static_cast<float>(floor)};
    for_each_pixel(out.numel(), prm, &cell_complexity_element<CpuCvt<scalar_t>, Div>);
  });
  return out;
}

at::Tensor cell_complexity_frames_kernel(const at::Tensor& images, const at::Tensor& scale, const at::Tensor& shift,
                                         at::ScalarType dtype, int64_t factor, double floor) {
  check_cell_complexity_frames_args(images, scale, shift, dtype, factor);
  const int64_t h = images.size(1), w = images.size(2);
  at::Tensor out = at::empty({images.size(0), h / factor, w / factor}, images.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "segblocks_cell_complexity_frames_cpu", [&] {
    CellComplexityParams<scalar_t, Div> prm{nullptr, Strides4{0, 0, 0, 0}, out.mutable_data_ptr<float>(),
                                            Div(w / factor), Div(h / factor), 3, factor, static_cast<float>(floor)};
    prm.images = images.const_data_ptr<uint8_t>();
    prm.scale = scale.const_data_ptr<float>();
    prm.shift = shift.const_data_ptr<float>();
    prm.height = h;
    prm.width = w;
    for_each_pixel(out.numel(), prm, &cell_complexity_element<CpuCvt<scalar_t>, Div, true>);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) {
  m.impl("cell_complexity", &cell_complexity_kernel);
  m.impl("cell_complexity_frames", &cell_complexity_frames_kernel);
}

}  // namespace cpu
}  // namespace segblocks
