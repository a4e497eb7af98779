// max_pool_units and max_pool_dense on CUDA: checks, device guard, current stream, launch of
// the torch-free kernels in max_pool_kernel.cu, and the CUDA registration.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

// out_padding > 0: the output is the padded tiles of a zero-padded convolution; the pooling
// writes their interiors (a view of them), block_pad_ring their frames.
at::Tensor max_pool_units_cuda(const at::Tensor& highres, const at::Tensor& lowres, const at::Tensor& hr_pos,
                               const at::Tensor& lr_pos, const at::Tensor& block_map, int64_t kernel,
                               int64_t stride, int64_t padding, bool quartered, int64_t out_padding) {
  const char* op = "max_pool_units";
  const BlockPadArgs checked = check_max_pool_units_args(highres, lowres, hr_pos, lr_pos, block_map, kernel,
                                                         stride, padding, quartered, out_padding);
  const BlockGrid& g = checked.grid;
  check_cuda_tensor(op, "highres", highres);
  const c10::cuda::CUDAGuard device_guard(highres.device());
  const at::MemoryFormat format = output_memory_format({highres, lowres});
  const int64_t uo = (g.hr_side / 2 + 2 * padding - kernel) / stride + 1;
  const int64_t side = uo + 2 * out_padding;
  at::Tensor out = at::empty({4 * g.num_highres + g.num_lowres, g.channels, side, side},
                             highres.options().memory_format(format));
  if (out.numel() == 0) return out;
  at::Tensor interior = out.narrow(2, out_padding, uo).narrow(3, out_padding, uo);
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const bool index32 = fits_index32({highres, lowres, out}, g);
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, highres.scalar_type(), "segblocks_max_pool_units_cuda", [&] {
    C10_CUDA_CHECK(launch_max_pool_units(
        cuda_data<scalar_t>(highres), strides_of(highres), cuda_data<scalar_t>(lowres), strides_of(lowres),
        cuda_mutable_data<scalar_t>(interior), strides_of(interior), hr_p.const_data_ptr<int64_t>(),
        lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), g, kernel, stride, padding, quartered,
        channels_last, index32, stream));
    if (out_padding > 0) {
      BlockGrid out_grid = g;  // the output's high-res blocks: units of side uo
      out_grid.hr_side = 2 * uo;
      C10_CUDA_CHECK(launch_block_pad_ring(cuda_mutable_data<scalar_t>(out), hr_p.const_data_ptr<int64_t>(),
                                           lr_p.const_data_ptr<int64_t>(), bm.const_data_ptr<int32_t>(), out_grid,
                                           out_padding, /*replicate=*/false, 0.0, channels_last, index32, stream));
    }
  });
  return out;
}

at::Tensor max_pool_dense_cuda(const at::Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  const char* op = "max_pool_dense";
  check_max_pool_dense_args(op, x, kernel, stride, padding);
  check_cuda_tensor(op, "x", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::MemoryFormat format = output_memory_format({x});
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ho = (h + 2 * padding - kernel) / stride + 1, wo = (w + 2 * padding - kernel) / stride + 1;
  at::Tensor out = at::empty({n, c, ho, wo}, x.options().memory_format(format));
  if (out.numel() == 0) return out;
  BlockGrid g{};  // for fits_index32: only the cell count matters
  const bool index32 = fits_index32({x, out}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_max_pool_dense_cuda", [&] {
    C10_CUDA_CHECK(launch_max_pool_dense(cuda_data<scalar_t>(x), strides_of(x), cuda_mutable_data<scalar_t>(out),
                                         n, c, h, w, kernel, stride, padding,
                                         format == at::MemoryFormat::ChannelsLast, index32, stream));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) {
  m.impl("max_pool_units", &max_pool_units_cuda);
  m.impl("max_pool_dense", &max_pool_dense_cuda);
}

}  // namespace cuda
}  // namespace segblocks
