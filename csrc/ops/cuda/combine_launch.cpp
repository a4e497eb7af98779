// combine and combine_backward on CUDA: checks, device guard, current stream, launch of the
// torch-free kernels in combine_kernel.cu, and the CUDA registration.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

// combine (units = false) and combine_units (highres given as the blocks' units): the same
// kernel, the high-res blocks read through HrStridesT
at::Tensor combine_any_cuda(const char* op, const BlockGrid& g, const at::Tensor& highres, const at::Tensor& lowres,
                            const at::Tensor& hr_pos, const at::Tensor& lr_pos, bool units) {
  check_cuda_tensor(op, "highres", highres);
  const c10::cuda::CUDAGuard device_guard(highres.device());
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  const int64_t h = g.hr_side;
  at::Tensor dense = at::empty({g.grid_n, g.channels, g.grid_h * h, g.grid_w * h},
                               highres.options().memory_format(format));
  if (dense.numel() == 0) return dense;
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  const bool index32 = fits_index32({highres, lowres, dense}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_combine_cuda", [&] {
    C10_CUDA_CHECK(launch_combine(cuda_data<scalar_t>(highres), strides_of(highres), cuda_data<scalar_t>(lowres),
                                  strides_of(lowres), cuda_mutable_data<scalar_t>(dense),
                                  hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(), g,
                                  format == at::MemoryFormat::ChannelsLast, index32, stream,
                                  /*hr_unit=*/units ? h / 2 : 0));
  });
  return dense;
}

at::Tensor combine_cuda(const at::Tensor& highres, const at::Tensor& lowres, const at::Tensor& hr_pos,
                        const at::Tensor& lr_pos, int64_t grid_n, int64_t grid_h, int64_t grid_w) {
  const BlockGrid g = check_combine_args(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w);
  return combine_any_cuda("combine", g, highres, lowres, hr_pos, lr_pos, /*units=*/false);
}

at::Tensor combine_units_cuda(const at::Tensor& highres, const at::Tensor& lowres, const at::Tensor& hr_pos,
                              const at::Tensor& lr_pos, int64_t grid_n, int64_t grid_h, int64_t grid_w) {
  const BlockGrid g = check_combine_units_args(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w);
  return combine_any_cuda("combine_units", g, highres, lowres, hr_pos, lr_pos, /*units=*/true);
}

std::tuple<at::Tensor, at::Tensor> combine_backward_cuda(const at::Tensor& grad, const at::Tensor& hr_pos,
                                                         const at::Tensor& lr_pos, int64_t block_size) {
  const BlockGrid g = check_combine_backward_args(grad, hr_pos, lr_pos, block_size);
  check_cuda_tensor("combine_backward", "grad", grad);
  const c10::cuda::CUDAGuard device_guard(grad.device());
  const at::MemoryFormat format = output_memory_format({grad});
  const auto options = grad.options().memory_format(format);
  const int64_t h = block_size;
  at::Tensor grad_highres = at::empty({g.num_highres, g.channels, h, h}, options);
  at::Tensor grad_lowres = at::empty({g.num_lowres, g.channels, h / 2, h / 2}, options);
  if (grad.numel() == 0) return {grad_highres, grad_lowres};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  const bool index32 = fits_index32({grad, grad_highres, grad_lowres}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                  "segblocks_combine_backward_cuda", [&] {
    C10_CUDA_CHECK(launch_combine_backward(
        cuda_data<scalar_t>(grad), strides_of(grad), cuda_mutable_data<scalar_t>(grad_highres),
        cuda_mutable_data<scalar_t>(grad_lowres), hr_p.const_data_ptr<int64_t>(),
        lr_p.const_data_ptr<int64_t>(), g, format == at::MemoryFormat::ChannelsLast, index32, stream));
  });
  return {grad_highres, grad_lowres};
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) {
  m.impl("combine", &combine_cuda);
  m.impl("combine_units", &combine_units_cuda);
  m.impl("combine_backward", &combine_backward_cuda);
}

}  // namespace cuda
}  // namespace segblocks
