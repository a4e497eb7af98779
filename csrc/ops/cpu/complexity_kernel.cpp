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

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) { m.impl("cell_complexity", &cell_complexity_kernel); }

}  // namespace cpu
}  // namespace segblocks
