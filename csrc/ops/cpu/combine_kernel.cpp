// combine and combine_backward on the CPU.
//
//   combine(highres [Nh, C, h, h], lowres [Nl, C, h/2, h/2], hr_pos, lr_pos, grid_n, grid_h,
//           grid_w) -> x [N, C, GH*h, GW*h]: high-res copied, low-res nearest-upsampled x2
//   combine_backward(grad [N, C, GH*h, GW*h], hr_pos, lr_pos, block_size h)
//       -> (grad_highres copied, grad_lowres = sum of each 2x2 group)
//
// Both are gathers (every output element is written by exactly one task): deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cpu/block_copy.h"

namespace segblocks {
namespace cpu {
namespace {

at::Tensor combine_kernel(const at::Tensor& highres, const at::Tensor& lowres,
                          const at::Tensor& hr_pos, const at::Tensor& lr_pos, int64_t grid_n,
                          int64_t grid_h, int64_t grid_w) {
  const BlockGrid g = check_combine_args(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w);
  check_layout_values_cpu("combine", hr_pos, lr_pos, nullptr, g);
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  const int64_t h = g.hr_side;
  at::Tensor dense = at::empty({grid_n, g.channels, grid_h * h, grid_w * h},
                               highres.options().memory_format(format));
  if (dense.numel() == 0) return dense;
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_combine_cpu", [&] {
    blocks_to_dense<scalar_t>(highres, lowres, dense, hr_p, lr_p, g, /*lowres_scale=*/1.0,
                              format == at::MemoryFormat::ChannelsLast);
  });
  return dense;
}

// combine_units(highres units [4 Nh, C, u, u], lowres [Nl, C, u, u], ...): combine of the
// units' blocks; on the CPU the units are put back together first (the CUDA kernel reads
// them in place).
at::Tensor combine_units_kernel(const at::Tensor& highres, const at::Tensor& lowres, const at::Tensor& hr_pos,
                                const at::Tensor& lr_pos, int64_t grid_n, int64_t grid_h, int64_t grid_w) {
  check_combine_units_args(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w);
  // the blocks in the units' memory format, so the output's is the one the units ask for
  const at::Tensor blocks = unquarter_units(highres).contiguous(output_memory_format({highres, lowres}));
  return combine_kernel(blocks, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w);
}

std::tuple<at::Tensor, at::Tensor> combine_backward_kernel(const at::Tensor& grad,
                                                           const at::Tensor& hr_pos,
                                                           const at::Tensor& lr_pos,
                                                           int64_t block_size) {
  const BlockGrid g = check_combine_backward_args(grad, hr_pos, lr_pos, block_size);
  check_layout_values_cpu("combine_backward", hr_pos, lr_pos, nullptr, g);
  const at::MemoryFormat format = output_memory_format({grad});
  const auto options = grad.options().memory_format(format);
  const int64_t h = block_size;
  at::Tensor grad_highres = at::empty({g.num_highres, g.channels, h, h}, options);
  at::Tensor grad_lowres = at::empty({g.num_lowres, g.channels, h / 2, h / 2}, options);
  if (grad.numel() == 0) return {grad_highres, grad_lowres};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                  "segblocks_combine_backward_cpu", [&] {
    dense_to_blocks<scalar_t>(grad, grad_highres, grad_lowres, hr_p, lr_p, g, /*lowres_scale=*/1.0,
                              format == at::MemoryFormat::ChannelsLast);
  });
  return {grad_highres, grad_lowres};
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) {
  m.impl("combine", &combine_kernel);
  m.impl("combine_units", &combine_units_kernel);
  m.impl("combine_backward", &combine_backward_kernel);
}

}  // namespace cpu
}  // namespace segblocks
