// An eval BatchNorm and the ReLU after it, in one pass (fused.BatchNormReLU):
//
//   scale_shift_relu(x [N, C, H, W] channels_last contiguous, scale [C], shift [C]) -> like x
//       out = relu(fma(x, scale[c], shift[c])) in float32, rounded once to x's dtype
//   (as PyTorch's addcmul + relu_ compute it, on the CPU and the GPU; BlockPad's prologue,
//   ops/cuda/block_pad.cuh pre_op, is the same up to the compiler's contraction; NaN stays NaN).
//
// PyTorch runs it as addcmul then an in-place ReLU, two passes over the map: 48 + 20 us for
// SwiftNet's largest decoder map ([1, 128, 256, 512] fp16) on the H100. Here one thread reads
// and writes one 16-byte pack of channels.
//
// Torch-free and CUDA-free: the CPU and CUDA kernels run this element function.
#pragma once

#include <cmath>
#include <cstdint>

#include "ops/block_indexing.h"

namespace segblocks {

template <typename scalar_t>
struct ScaleShiftReluParams {
  const scalar_t* x;    // [pixels, C] contiguous (a channels_last map)
  scalar_t* out;        // same layout
  const scalar_t* scale;  // [C]
  const scalar_t* shift;  // [C]
  int64_t channels;     // a multiple of kPack
};

// Pack `pack` (of pixels * C / kPack).
template <typename Cvt, int kPack>
SEGBLOCKS_HOST_DEVICE void scale_shift_relu_element(const ScaleShiftReluParams<typename Cvt::scalar_t>& prm,
                                                    int64_t pack) {
  using scalar_t = typename Cvt::scalar_t;
  using acc_t = typename Cvt::acc_t;
  using P = Pack<scalar_t, kPack>;
  const int64_t e = pack * kPack;
  const int64_t c = e % prm.channels;
  const P x = load_pack<scalar_t, kPack>(prm.x + e), s = load_pack<scalar_t, kPack>(prm.scale + c),
          b = load_pack<scalar_t, kPack>(prm.shift + c);
  P y;
  SEGBLOCKS_UNROLL
  for (int l = 0; l < kPack; ++l) {
    const acc_t a = fmaf(Cvt::to_acc(x.v[l]), Cvt::to_acc(s.v[l]), Cvt::to_acc(b.v[l]));
    y.v[l] = Cvt::round(a < acc_t(0) ? acc_t(0) : a);
  }
  *reinterpret_cast<P*>(prm.out + e) = y;
}

}  // namespace segblocks
