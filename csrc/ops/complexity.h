// Per-cell texture of the complexity policy (Eq. 1 of the paper, policy.py):
//
//   cell_complexity(x [N, C, H, W], channels, factor, floor) -> float32 [N, H/f, W/f]
//       out[n, i, j] = sum over c < channels and the f x f pixels p of cell (i, j) of
//                      threshold(| x[n, c, p] - mean_cell(x[n, c]) |, floor)
//   (threshold: values <= floor count as 0, like F.threshold), computed in float32 as the
//   reference does (x.float()). The block complexity C_b is the sum of its cells / B^2.
//   cell_complexity_frames(images uint8 [N, H, W, 3], scale, shift, dtype, factor, floor):
//       the same of normalize_frames(images, scale, shift, 3, dtype) (ops/normalize.h), each
//       value normalised and rounded to dtype as it is read, the map never written.
//
// One pass over the input instead of the reference's chain of full-size float32 temporaries
// (the policy graph took 0.24 ms of a 2.4 ms frame on the H100).
//
// Torch-free and CUDA-free: the CPU and CUDA kernels run this element function (one cell).
#pragma once

#include <cmath>
#include <cstdint>

#include "ops/block_indexing.h"

namespace segblocks {

template <typename scalar_t, typename D>
struct CellComplexityParams {
  const scalar_t* x;
  Strides4 strides;
  float* out;  // [N, H/f, W/f], contiguous
  D cells_w_div, cells_h_div;  // divide by W/f and H/f
  int64_t channels, factor;
  float floor;
  // cell_complexity_frames (x unused): uint8 RGB frames [N, height, width, 3] contiguous and
  // normalize_frames' float32 [3] constants
  const uint8_t* images = nullptr;
  const float* scale = nullptr;
  const float* shift = nullptr;
  int64_t height = 0, width = 0;
};

// kFrames: the values are normalize_frames' of prm.images (fma, rounded to the dtype).
template <typename Cvt, typename D, bool kFrames = false>
SEGBLOCKS_HOST_DEVICE void cell_complexity_element(const CellComplexityParams<typename Cvt::scalar_t, D>& prm,
                                                   int64_t linear) {
  using index_t = typename D::index_t;
  const StridesT<index_t> s(prm.strides);
  const index_t e = static_cast<index_t>(linear);
  const index_t row = prm.cells_w_div.div(e);
  const index_t j = e - row * static_cast<index_t>(prm.cells_w_div.divisor);
  const index_t n = prm.cells_h_div.div(row);
  const index_t i = row - n * static_cast<index_t>(prm.cells_h_div.divisor);
  const index_t f = static_cast<index_t>(prm.factor);
  const float inv_area = 1.0f / static_cast<float>(f * f);
  float total = 0.0f;
  for (index_t c = 0; c < static_cast<index_t>(prm.channels); ++c) {
    const auto at = [&](index_t dy, index_t dx) {
      if constexpr (kFrames) {
        const int64_t pixel = (static_cast<int64_t>(n) * prm.height + i * f + dy) * prm.width + j * f + dx;
        const float v = fmaf(static_cast<float>(prm.images[pixel * 3 + c]), prm.scale[c], prm.shift[c]);
        return static_cast<float>(Cvt::to_acc(Cvt::round(v)));
      } else {
        return static_cast<float>(Cvt::to_acc(prm.x[s.offset(n, c, i * f + dy, j * f + dx)]));
      }
    };
    float sum = 0.0f;
    for (index_t dy = 0; dy < f; ++dy) {
      for (index_t dx = 0; dx < f; ++dx) sum += at(dy, dx);
    }
    const float mean = sum * inv_area;
    for (index_t dy = 0; dy < f; ++dy) {
      for (index_t dx = 0; dx < f; ++dx) {
        const float d = at(dy, dx) - mean;
        const float a = d < 0.0f ? -d : d;
        total += a > prm.floor ? a : 0.0f;
      }
    }
  }
  prm.out[e] = total;
}

}  // namespace segblocks
