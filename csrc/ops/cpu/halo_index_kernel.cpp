// halo_index on the CPU: checks, then ops/halo_index.h's element for every index entry.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/halo_index.h"

namespace segblocks {
namespace cpu {
namespace {

std::tuple<at::Tensor, at::Tensor> halo_index_kernel(const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                                     const at::Tensor& block_map, int64_t side) {
  const BlockGrid g = check_halo_index_args(hr_pos, lr_pos, block_map, side);
  check_layout_values_cpu("halo_index", hr_pos, lr_pos, &block_map, g);
  auto [index, mean_rows] = empty_halo_index(hr_pos, g);
  if (index.numel() == 0) return {index, mean_rows};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  const auto prm = make_halo_index_params<PlainDivider<int64_t>>(
      hr_p.data_ptr<int64_t>(), lr_p.data_ptr<int64_t>(), bm.data_ptr<int32_t>(), g, index.data_ptr<int32_t>(),
      mean_rows.data_ptr<int32_t>());
  at::parallel_for(0, index.numel(), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) halo_index_element(prm, e);
  });
  return {index, mean_rows};
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) { m.impl("halo_index", &halo_index_kernel); }

}  // namespace cpu
}  // namespace segblocks
