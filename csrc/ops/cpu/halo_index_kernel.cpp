// halo_index and halo_means_ on the CPU: checks, then ops/halo_index.h's elements (one per index
// entry; one per channel of each written source row).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cpu/block_copy.h"
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

void halo_means_kernel(const at::Tensor& source, const at::Tensor& mean_rows, int64_t unit_rows) {
  check_halo_means_args(source, mean_rows, unit_rows);
  const int64_t zero_row = unit_rows + mean_rows.size(0);
  const int32_t* q = mean_rows.const_data_ptr<int32_t>();
  for (int64_t i = 0; i < mean_rows.numel(); ++i) {
    TORCH_CHECK(q[i] >= 0 && q[i] <= zero_row && (q[i] < unit_rows || q[i] == zero_row), "halo_means_: mean_rows[",
                i / 4, "] holds row ", q[i], ", neither a unit row (< ", unit_rows, ") nor the zero row (", zero_row,
                ")");
  }
  if (source.size(1) == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, source.scalar_type(), "segblocks_halo_means_cpu", [&] {
    const HaloMeansParams<scalar_t> prm{source.mutable_data_ptr<scalar_t>(), q, source.size(1), unit_rows,
                                        mean_rows.size(0)};
    for_each_pixel((mean_rows.size(0) + 1) * source.size(1), prm, &halo_means_element<CpuCvt<scalar_t>, 1>);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) {
  m.impl("halo_index", &halo_index_kernel);
  m.impl("halo_means_", &halo_means_kernel);
}

}  // namespace cpu
}  // namespace segblocks
