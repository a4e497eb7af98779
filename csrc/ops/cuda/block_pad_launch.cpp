// block_pad and block_pad_backward on CUDA: checks, device guard, current stream, launch of
// the torch-free kernels in block_pad_kernel.cu, and the CUDA registration.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> block_pad_cuda(const at::Tensor& highres, const at::Tensor& lowres,
                                                  const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                                  const at::Tensor& block_map, int64_t padding,
                                                  c10::string_view mode, double value) {
  const char* op = "block_pad";
  const BlockPadArgs checked =
      check_block_pad_args(highres, lowres, hr_pos, lr_pos, block_map, padding, mode);
  const BlockGrid& g = checked.grid;
  const bool replicate = checked.replicate;
  check_cuda_tensor(op, "highres", highres);
  const c10::cuda::CUDAGuard device_guard(highres.device());
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  const auto options = highres.options().memory_format(format);
  const int64_t hp = g.hr_side + 2 * padding, lp = g.hr_side / 2 + 2 * padding;
  at::Tensor hr_out = at::empty({g.num_highres, g.channels, hp, hp}, options);
  at::Tensor lr_out = at::empty({g.num_lowres, g.channels, lp, lp}, options);
  if (hr_out.numel() + lr_out.numel() == 0) return {hr_out, lr_out};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool index32 = fits_index32({highres, lowres, hr_out, lr_out}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_block_pad_cuda", [&] {
    C10_CUDA_CHECK(launch_block_pad(
        cuda_data<scalar_t>(highres), strides_of(highres), cuda_data<scalar_t>(lowres), strides_of(lowres),
        cuda_mutable_data<scalar_t>(hr_out), cuda_mutable_data<scalar_t>(lr_out),
        hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), g,
        padding, replicate, value, format == at::MemoryFormat::ChannelsLast, index32, 0, 0,
        static_cast<const typename CudaScalar<scalar_t>::type*>(nullptr),
        static_cast<const typename CudaScalar<scalar_t>::type*>(nullptr), stream));
  });
  return {hr_out, lr_out};
}

at::Tensor block_pad_units_cuda(const at::Tensor& highres, const at::Tensor& lowres,
                                const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                const at::Tensor& block_map, int64_t padding, c10::string_view mode,
                                double value, bool quartered, const std::optional<at::Tensor>& pre_scale,
                                const std::optional<at::Tensor>& pre_shift) {
  const char* op = "block_pad_units";
  const BlockPadArgs checked = check_block_pad_units_args(highres, lowres, hr_pos, lr_pos, block_map,
                                                          padding, mode, quartered, pre_scale, pre_shift);
  const BlockGrid& g = checked.grid;
  check_cuda_tensor(op, "highres", highres);
  const c10::cuda::CUDAGuard device_guard(highres.device());
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  const int64_t u = g.hr_side / 2, up = u + 2 * padding;
  at::Tensor out = at::empty({4 * g.num_highres + g.num_lowres, g.channels, up, up},
                             highres.options().memory_format(format));
  if (out.numel() == 0) return out;
  at::Tensor hr_out = out.narrow(0, 0, 4 * g.num_highres);
  at::Tensor lr_out = out.narrow(0, 4 * g.num_highres, g.num_lowres);
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool index32 = fits_index32({highres, lowres, out}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool pre = pre_scale.has_value();
  const at::Tensor scale = pre ? pre_scale->contiguous() : at::Tensor();
  const at::Tensor shift = pre ? pre_shift->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_block_pad_units_cuda", [&] {
    C10_CUDA_CHECK(launch_block_pad(
        cuda_data<scalar_t>(highres), strides_of(highres), cuda_data<scalar_t>(lowres), strides_of(lowres),
        cuda_mutable_data<scalar_t>(hr_out), cuda_mutable_data<scalar_t>(lr_out),
        hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), g,
        padding, checked.replicate, value, format == at::MemoryFormat::ChannelsLast, index32,
        quartered ? u : 0, u, pre ? cuda_data<scalar_t>(scale) : nullptr,
        pre ? cuda_data<scalar_t>(shift) : nullptr, stream));
  });
  return out;
}

// The frames of tiles whose interiors are written, in place (with_block_pad_ring).
void block_pad_ring_cuda(const at::Tensor& padded, const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                         const at::Tensor& block_map, int64_t padding) {
  const char* op = "block_pad_ring_";
  const BlockPadArgs checked = check_block_pad_ring_args(padded, hr_pos, lr_pos, block_map, padding);
  check_cuda_tensor(op, "padded", padded);
  if (padded.numel() == 0) return;
  const c10::cuda::CUDAGuard device_guard(padded.device());
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool index32 = fits_index32({padded}, checked.grid);
  const bool channels_last = !padded.is_contiguous();  // checked: one of the two
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor tiles = padded;  // the same tensor (the schema's Tensor(a!)): written in place
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, padded.scalar_type(), "segblocks_block_pad_ring_cuda", [&] {
    C10_CUDA_CHECK(launch_block_pad_ring(cuda_mutable_data<scalar_t>(tiles), hr_p.const_data_ptr<int64_t>(),
                                         lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), checked.grid,
                                         padding, /*replicate=*/false, 0.0, channels_last, index32, stream));
  });
}

std::tuple<at::Tensor, at::Tensor> block_pad_backward_cuda(
    const at::Tensor& grad_highres_padded, const at::Tensor& grad_lowres_padded,
    const at::Tensor& hr_pos, const at::Tensor& lr_pos, const at::Tensor& block_map,
    int64_t padding, c10::string_view mode) {
  const char* op = "block_pad_backward";
  const BlockPadArgs checked = check_block_pad_backward_args(grad_highres_padded, grad_lowres_padded, hr_pos,
                                                             lr_pos, block_map, padding, mode);
  const BlockGrid& g = checked.grid;
  const bool replicate = checked.replicate;
  check_cuda_tensor(op, "grad_highres_padded", grad_highres_padded);
  const c10::cuda::CUDAGuard device_guard(grad_highres_padded.device());
  const at::MemoryFormat format = output_memory_format({grad_highres_padded, grad_lowres_padded});
  const auto options = grad_highres_padded.options().memory_format(format);
  const int64_t h = g.hr_side;
  at::Tensor grad_hr = at::empty({g.num_highres, g.channels, h, h}, options);
  at::Tensor grad_lr = at::empty({g.num_lowres, g.channels, h / 2, h / 2}, options);
  if (grad_hr.numel() + grad_lr.numel() == 0) return {grad_hr, grad_lr};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool index32 = fits_index32({grad_highres_padded, grad_lowres_padded, grad_hr, grad_lr}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_highres_padded.scalar_type(),
                                  "segblocks_block_pad_backward_cuda", [&] {
    C10_CUDA_CHECK(launch_block_pad_backward(
        cuda_data<scalar_t>(grad_highres_padded), strides_of(grad_highres_padded),
        cuda_data<scalar_t>(grad_lowres_padded), strides_of(grad_lowres_padded),
        cuda_mutable_data<scalar_t>(grad_hr), cuda_mutable_data<scalar_t>(grad_lr),
        hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), g,
        padding, replicate, format == at::MemoryFormat::ChannelsLast, index32, stream));
  });
  return {grad_hr, grad_lr};
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) {
  m.impl("block_pad", &block_pad_cuda);
  m.impl("block_pad_units", &block_pad_units_cuda);
  m.impl("block_pad_ring_", &block_pad_ring_cuda);
  m.impl("block_pad_backward", &block_pad_backward_cuda);
}

}  // namespace cuda
}  // namespace segblocks
