// conv3x3_units on the GPU: the parameter builder shared by the launcher
// (conv_units_kernel.cu, mma.sync) and test/cuda_kernels_host.cu (the same per-thread pieces of
// ops/conv_units.h around a scalar multiply on the CPU).
#pragma once

#include "ops/conv_units.h"
#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/upsample_argmax.cuh"  // CudaCvt

namespace segblocks {
namespace cuda {

// Calls run.template operator()<Cvt, D>(params) with the index type the sizes allow; `run`
// fills the table (conv_units_table_element over m_tiles * HP), runs the work items
// (m_tiles x Co / kConvBN x splits) and, with several splits, reduces them
// (conv_units_reduce_element over rows * Co / 8). `weight` is [Co, 3, 3, Ci] contiguous;
// highres, lowres, residual and out are channels_last with channels contiguous (the
// launcher checks packability). `table` holds conv_units_table_bytes; with more than one
// split, `partial` holds [splits, rows, Co] float32.
template <typename scalar_t, typename Run>
void with_conv_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                     Strides4 lowres_strides, const int64_t* hr_pos, const int64_t* lr_pos,
                     const int32_t* block_map, const BlockGrid& g, const scalar_t* weight, const scalar_t* bias,
                     const scalar_t* residual, scalar_t* out, int64_t cout, bool relu, bool quartered,
                     int64_t stride, const scalar_t* pre_scale, const scalar_t* pre_shift, const ConvSplitPlan& plan,
                     void* table, float* partial, bool index32, Run&& run) {
  const int64_t u = g.hr_side / 2;
  const int64_t units = 4 * g.num_highres + g.num_lowres;
  const ConvTiling tiling = conv_tiling(units, u, stride);
  const int64_t rows = units * tiling.uo * tiling.uo;
  if (rows == 0 || cout == 0) return;
  const auto go = [&](auto divider_tag) {
    using D = decltype(divider_tag);
    using Params = ConvUnitsParams<scalar_t, D>;
    const Params prm{{highres, highres_strides, quartered ? u : 0, lowres, lowres_strides, hr_pos, lr_pos, block_map},
                     weight,
                     bias,
                     residual,
                     out,
                     GridIndexer<D>(g),
                     tiling,
                     static_cast<PadSource<typename D::index_t>*>(table),
                     4 * g.num_highres,
                     rows,
                     g.channels,
                     cout,
                     relu,
                     pre_scale,
                     pre_shift,
                     plan.splits,
                     plan.chunks_per_split,
                     partial};
    run.template operator()<CudaCvt<scalar_t>, D>(prm);
  };
  if (index32) {
    go(FastDivider{});
  } else {
    go(PlainDivider<int64_t>{});
  }
}

}  // namespace cuda
}  // namespace segblocks
