// The network input from uint8 RGB frames, in one pass:
//
//   normalize_frames(images uint8 [N, H, W, 3] contiguous, scale float32 [3], shift float32 [3],
//                    channels >= 3, dtype) -> [N, channels, H, W] of dtype, channels_last
//       out[n, c, y, x] = dtype(fma(images[n, y, x, c], scale[c], shift[c]))   c < 3
//                       = 0                                                     c >= 3
//   fma: the exact x * scale + shift rounded once to float32, then rounded to dtype (half,
//   bfloat16 or float32). The zero channels are the ones a network prepared with
//   input_channels > 3 takes (zero weights; cuDNN's fast first-layer kernel wants 4).
//
// PyTorch's way (a fill of the zero channels, then addcmul into a strided view of the other
// three) took 31 us + the fill for a 2048x1024 frame on the H100, a quarter of the memory
// bandwidth; here one thread writes one pixel (an 8-byte pack for 4 half channels).
//
// Torch-free and CUDA-free: the CPU and CUDA kernels run this element function.
#pragma once

#include <cmath>
#include <cstdint>

#include "ops/block_indexing.h"

namespace segblocks {

template <typename scalar_t>
struct NormalizeParams {
  const uint8_t* images;  // [N, H, W, 3] contiguous
  const float* scale;     // [3]
  const float* shift;     // [3]
  scalar_t* out;          // [N, H, W, channels] contiguous (a channels_last [N, channels, H, W])
  int64_t channels;
};

// Pixel `pixel` (of N * H * W); kPack4: channels == 4 and the 4 values stored as one pack.
template <typename Cvt, bool kPack4>
SEGBLOCKS_HOST_DEVICE void normalize_element(const NormalizeParams<typename Cvt::scalar_t>& prm, int64_t pixel) {
  using scalar_t = typename Cvt::scalar_t;
  const uint8_t* in = prm.images + pixel * 3;
  scalar_t v[3];
  SEGBLOCKS_UNROLL
  for (int c = 0; c < 3; ++c) {
    v[c] = Cvt::round(fmaf(static_cast<float>(in[c]), prm.scale[c], prm.shift[c]));
  }
  if constexpr (kPack4) {
    Pack<scalar_t, 4> p;
    p.v[0] = v[0];
    p.v[1] = v[1];
    p.v[2] = v[2];
    p.v[3] = Cvt::round(0.0f);
    *reinterpret_cast<Pack<scalar_t, 4>*>(prm.out + pixel * 4) = p;
  } else {
    scalar_t* o = prm.out + pixel * prm.channels;
    o[0] = v[0];
    o[1] = v[1];
    o[2] = v[2];
    for (int64_t c = 3; c < prm.channels; ++c) o[c] = Cvt::round(0.0f);
  }
}

}  // namespace segblocks
