// split and split_backward on the CPU.
//
//   split(x [N, C, GH*b, GW*b], hr_pos [Nh], lr_pos [Nl], block_size b)
//       -> (highres [Nh, C, b, b] copied, lowres [Nl, C, b/2, b/2] 2x2-averaged)
//   split_backward(grad_highres, grad_lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w)
//       -> grad_x [N, C, GH*b, GW*b]: high-res grads copied, low-res grads / 4 replicated 2x2
//
// Both are gathers (every output element is written by exactly one task), so the backward
// is deterministic without atomics.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cpu/block_copy.h"

namespace segblocks {
namespace cpu {
namespace {

std::tuple<at::Tensor, at::Tensor> split_kernel(const at::Tensor& x, const at::Tensor& hr_pos,
                                                const at::Tensor& lr_pos, int64_t block_size) {
  const BlockGrid g = check_split_args(x, hr_pos, lr_pos, block_size);
  check_layout_values_cpu("split", hr_pos, lr_pos, nullptr, g);
  const at::MemoryFormat format = output_memory_format({x});
  const auto options = x.options().memory_format(format);
  const int64_t b = block_size;
  at::Tensor highres = at::empty({g.num_highres, g.channels, b, b}, options);
  at::Tensor lowres = at::empty({g.num_lowres, g.channels, b / 2, b / 2}, options);
  if (x.numel() == 0) return {highres, lowres};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_split_cpu", [&] {
    dense_to_blocks<scalar_t>(x, highres, lowres, hr_p, lr_p, g, /*lowres_scale=*/0.25,
                              format == at::MemoryFormat::ChannelsLast);
  });
  return {highres, lowres};
}

at::Tensor split_backward_kernel(const at::Tensor& grad_highres, const at::Tensor& grad_lowres,
                                 const at::Tensor& hr_pos, const at::Tensor& lr_pos, int64_t grid_n,
                                 int64_t grid_h, int64_t grid_w) {
  const BlockGrid g =
      check_split_backward_args(grad_highres, grad_lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w);
  check_layout_values_cpu("split_backward", hr_pos, lr_pos, nullptr, g);
  const at::MemoryFormat format = output_memory_format({grad_highres, grad_lowres});
  const int64_t b = g.hr_side;
  at::Tensor grad_x = at::empty({grid_n, g.channels, grid_h * b, grid_w * b},
                                grad_highres.options().memory_format(format));
  if (grad_x.numel() == 0) return grad_x;
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_highres.scalar_type(),
                                  "segblocks_split_backward_cpu", [&] {
    blocks_to_dense<scalar_t>(grad_highres, grad_lowres, grad_x, hr_p, lr_p, g,
                              /*lowres_scale=*/0.25, format == at::MemoryFormat::ChannelsLast);
  });
  return grad_x;
}

// split_units(x, hr_pos, lr_pos, block_size) -> units [4 Nh + Nl, C, b/2, b/2]: split's
// high-res blocks as units, then its low-res blocks; on the CPU split (the low-res blocks
// written straight into the units' tail) and a copy of the quarters (the CUDA kernel writes
// the units in one pass).
at::Tensor split_units_kernel(const at::Tensor& x, const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                              int64_t block_size) {
  const BlockGrid g = check_split_units_args(x, hr_pos, lr_pos, block_size);
  check_layout_values_cpu("split_units", hr_pos, lr_pos, nullptr, g);
  const at::MemoryFormat format = output_memory_format({x});
  const auto options = x.options().memory_format(format);
  const int64_t b = block_size, u = b / 2, nh = g.num_highres;
  at::Tensor units = at::empty({4 * nh + g.num_lowres, g.channels, u, u}, options);
  if (x.numel() == 0) return units;
  at::Tensor highres = at::empty({nh, g.channels, b, b}, options);
  at::Tensor lowres = units.narrow(0, 4 * nh, g.num_lowres);
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_split_units_cpu", [&] {
    dense_to_blocks<scalar_t>(x, highres, lowres, hr_p, lr_p, g, /*lowres_scale=*/0.25,
                              format == at::MemoryFormat::ChannelsLast);
  });
  units.narrow(0, 0, 4 * nh).copy_(quarter_blocks(highres));
  return units;
}

// split_padded(x, hr_pos, lr_pos, block_map, block_size, padding) = block_pad(split(x),
// padding, "constant", 0): on the CPU the two ops in turn (the CUDA kernel computes the
// padded blocks from x in one pass).
std::tuple<at::Tensor, at::Tensor> split_padded_kernel(const at::Tensor& x, const at::Tensor& hr_pos,
                                                       const at::Tensor& lr_pos, const at::Tensor& block_map,
                                                       int64_t block_size, int64_t padding) {
  check_split_padded_args(x, hr_pos, lr_pos, block_map, block_size, padding);
  const auto [highres, lowres] = split_kernel(x, hr_pos, lr_pos, block_size);
  static const auto block_pad =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("segblocks::block_pad", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, const at::Tensor&, int64_t, c10::string_view,
                                                    double)>();
  return block_pad.call(highres, lowres, hr_pos, lr_pos, block_map, padding, "constant", 0.0);
}

// split_padded_frames(images, scale, shift, hr_pos, lr_pos, block_map, block_size, padding,
// channels, dtype) = split_padded(normalize_frames(images, ...), ...): on the CPU the two ops
// in turn (the CUDA kernel normalises the frames' pixels as it reads them).
std::tuple<at::Tensor, at::Tensor> split_padded_frames_kernel(const at::Tensor& images, const at::Tensor& scale,
                                                              const at::Tensor& shift, const at::Tensor& hr_pos,
                                                              const at::Tensor& lr_pos, const at::Tensor& block_map,
                                                              int64_t block_size, int64_t padding, int64_t channels,
                                                              at::ScalarType dtype) {
  check_split_padded_frames_args(images, scale, shift, hr_pos, lr_pos, block_map, block_size, padding, channels,
                                 dtype);
  at::Tensor x = at::empty({images.size(0), channels, images.size(1), images.size(2)},
                           images.options().dtype(dtype).memory_format(at::MemoryFormat::ChannelsLast));
  static const auto normalize =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("segblocks::normalize_frames_", "")
          .typed<void(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  normalize.call(x, images, scale, shift);
  return split_padded_kernel(x, hr_pos, lr_pos, block_map, block_size, padding);
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) {
  m.impl("split_padded_frames", &split_padded_frames_kernel);
  m.impl("split", &split_kernel);
  m.impl("split_padded", &split_padded_kernel);
  m.impl("split_units", &split_units_kernel);
  m.impl("split_backward", &split_backward_kernel);
}

}  // namespace cpu
}  // namespace segblocks
