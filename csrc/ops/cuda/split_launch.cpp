// split and split_backward on CUDA: checks, device guard, current stream, launch of the
// torch-free kernels in split_kernel.cu, and the CUDA registration.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>

#include "ops/block_checks.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> split_cuda(const at::Tensor& x, const at::Tensor& hr_pos,
                                              const at::Tensor& lr_pos, int64_t block_size) {
  const BlockGrid g = check_split_args(x, hr_pos, lr_pos, block_size);
  check_cuda_tensor("split", "x", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::MemoryFormat format = output_memory_format({x});
  const auto options = x.options().memory_format(format);
  const int64_t b = block_size;
  at::Tensor highres = at::empty({g.num_highres, g.channels, b, b}, options);
  at::Tensor lowres = at::empty({g.num_lowres, g.channels, b / 2, b / 2}, options);
  if (x.numel() == 0) return {highres, lowres};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  const bool index32 = fits_index32({x, highres, lowres}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_split_cuda", [&] {
    C10_CUDA_CHECK(launch_split(cuda_data<scalar_t>(x), strides_of(x), cuda_mutable_data<scalar_t>(highres),
                                cuda_mutable_data<scalar_t>(lowres), hr_p.const_data_ptr<int64_t>(),
                                lr_p.const_data_ptr<int64_t>(), g,
                                format == at::MemoryFormat::ChannelsLast, index32, stream));
  });
  return {highres, lowres};
}

at::Tensor split_units_cuda(const at::Tensor& x, const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                            int64_t block_size) {
  const BlockGrid g = check_split_units_args(x, hr_pos, lr_pos, block_size);
  check_cuda_tensor("split_units", "x", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::MemoryFormat format = output_memory_format({x});
  const int64_t u = block_size / 2;
  at::Tensor units = at::empty({4 * g.num_highres + g.num_lowres, g.channels, u, u},
                               x.options().memory_format(format));
  if (x.numel() == 0) return units;
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  const bool index32 = fits_index32({x, units}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_split_units_cuda", [&] {
    C10_CUDA_CHECK(launch_split_units(cuda_data<scalar_t>(x), strides_of(x), cuda_mutable_data<scalar_t>(units),
                                      hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(), g,
                                      format == at::MemoryFormat::ChannelsLast, index32, stream));
  });
  return units;
}

at::Tensor split_backward_cuda(const at::Tensor& grad_highres, const at::Tensor& grad_lowres,
                               const at::Tensor& hr_pos, const at::Tensor& lr_pos, int64_t grid_n,
                               int64_t grid_h, int64_t grid_w) {
  const BlockGrid g =
      check_split_backward_args(grad_highres, grad_lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w);
  check_cuda_tensor("split_backward", "grad_highres", grad_highres);
  const c10::cuda::CUDAGuard device_guard(grad_highres.device());
  const at::MemoryFormat format = output_memory_format({grad_highres, grad_lowres});
  const int64_t b = g.hr_side;
  at::Tensor grad_x = at::empty({grid_n, g.channels, grid_h * b, grid_w * b},
                                grad_highres.options().memory_format(format));
  if (grad_x.numel() == 0) return grad_x;
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous();
  const bool index32 = fits_index32({grad_highres, grad_lowres, grad_x}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_highres.scalar_type(),
                                  "segblocks_split_backward_cuda", [&] {
    C10_CUDA_CHECK(launch_split_backward(
        cuda_data<scalar_t>(grad_highres), strides_of(grad_highres), cuda_data<scalar_t>(grad_lowres),
        strides_of(grad_lowres), cuda_mutable_data<scalar_t>(grad_x), hr_p.const_data_ptr<int64_t>(),
        lr_p.const_data_ptr<int64_t>(), g, format == at::MemoryFormat::ChannelsLast, index32, stream));
  });
  return grad_x;
}

std::tuple<at::Tensor, at::Tensor> split_padded_cuda(const at::Tensor& x, const at::Tensor& hr_pos,
                                                     const at::Tensor& lr_pos, const at::Tensor& block_map,
                                                     int64_t block_size, int64_t padding) {
  const BlockGrid g = check_split_padded_args(x, hr_pos, lr_pos, block_map, block_size, padding);
  check_cuda_tensor("split_padded", "x", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::MemoryFormat format = output_memory_format({x});
  const auto options = x.options().memory_format(format);
  const int64_t hp = block_size + 2 * padding, lp = block_size / 2 + 2 * padding;
  at::Tensor highres = at::empty({g.num_highres, g.channels, hp, hp}, options);
  at::Tensor lowres = at::empty({g.num_lowres, g.channels, lp, lp}, options);
  if (x.numel() == 0) return {highres, lowres};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool index32 = fits_index32({x, highres, lowres}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_split_padded_cuda", [&] {
    C10_CUDA_CHECK(launch_split_padded(cuda_data<scalar_t>(x), strides_of(x), cuda_mutable_data<scalar_t>(highres),
                                       cuda_mutable_data<scalar_t>(lowres), hr_p.const_data_ptr<int64_t>(),
                                       lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), g, padding,
                                       format == at::MemoryFormat::ChannelsLast, index32, stream));
  });
  return {highres, lowres};
}

std::tuple<at::Tensor, at::Tensor> split_padded_frames_cuda(const at::Tensor& images, const at::Tensor& scale,
                                                            const at::Tensor& shift, const at::Tensor& hr_pos,
                                                            const at::Tensor& lr_pos, const at::Tensor& block_map,
                                                            int64_t block_size, int64_t padding, int64_t channels,
                                                            at::ScalarType dtype) {
  const BlockGrid g = check_split_padded_frames_args(images, scale, shift, hr_pos, lr_pos, block_map, block_size,
                                                     padding, channels, dtype);
  check_cuda_tensor("split_padded_frames", "images", images);
  const c10::cuda::CUDAGuard device_guard(images.device());
  const auto options = images.options().dtype(dtype).memory_format(at::MemoryFormat::ChannelsLast);
  const int64_t hp = block_size + 2 * padding, lp = block_size / 2 + 2 * padding;
  at::Tensor highres = at::empty({g.num_highres, channels, hp, hp}, options);
  at::Tensor lowres = at::empty({g.num_lowres, channels, lp, lp}, options);
  if (images.numel() == 0) return {highres, lowres};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool index32 = fits_index32({images, highres, lowres}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "segblocks_split_padded_frames_cuda", [&] {
    if constexpr (!std::is_same_v<scalar_t, double>) {
      C10_CUDA_CHECK(launch_split_padded_frames(
          images.const_data_ptr<uint8_t>(), scale.const_data_ptr<float>(), shift.const_data_ptr<float>(),
          images.size(1), images.size(2), cuda_mutable_data<scalar_t>(highres), cuda_mutable_data<scalar_t>(lowres),
          hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), g, padding,
          index32, stream));
    }
  });
  return {highres, lowres};
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) {
  m.impl("split_padded_frames", &split_padded_frames_cuda);
  m.impl("split", &split_cuda);
  m.impl("split_units", &split_units_cuda);
  m.impl("split_padded", &split_padded_cuda);
  m.impl("split_backward", &split_backward_cuda);
}

}  // namespace cuda
}  // namespace segblocks
