// Max pooling without indices, fused with BlockPad on units, and its dense twin.
//
//   max_pool_units(highres, lowres, hr_pos, lr_pos, block_map, k, s, p, quartered)
//       -> [4Nh + Nl, C, uo, uo],  uo = (h/2 + 2p - k) / s + 1
//   equals  F.max_pool2d(block_pad_units(highres, lowres, ..., p, "constant", -inf,
//                                        quartered), k, s)
//   without writing the padded tiles: each output reads its k x k window through BlockPad's
//   rules (UnitWindow, ops/unit_window.h), so a halo pixel is looked up, never stored.
//
//   max_pool_dense(x [N, C, H, W], k, s, p) -> [N, C, Ho, Wo] = F.max_pool2d(x, k, s, p)
//
// On the GPU, channels_last maps whose channel count is a multiple of 16 bytes' worth run
// one thread per output pixel and pack of channels (MaxOfPack: one aligned load per window
// pixel), like BlockPad's packed path. A units window that lies inside its own unit (all
// but the first output row and column of SwiftNet's 3x3 s2 p1 pooling) is read from one
// base pointer; only the others look pixels up through BlockPad's rules.
//
// PyTorch's CUDA max pooling always writes int64 indices next to its output (8 bytes per
// output value: for SwiftNet's stem pooling, more memory than the output itself); these
// do not. NaN propagates as in torch (a NaN in the window is the maximum).
//
// Torch-free and CUDA-free (like upsample_argmax.h): the CPU kernels and the CUDA kernels
// run these element functions, with the conversions supplied by `Cvt`; only the device pass
// of nvcc (sm_80+) sees the paired half/bfloat16 maximum.
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include "ops/block_indexing.h"
#include "ops/unit_window.h"

namespace segblocks {

// The running maxima of kPack consecutive channels (kPack = 1: one element), kept in the
// dtype: a maximum is one of its inputs, so no rounding is involved. NaN wins, as in torch
// (`v > best || v != v`); on the GPU (sm_80+), half and bfloat16 lanes go in pairs through
// __hmax2_nan, one instruction for two lanes where the float compare took three per lane.
template <typename Cvt, int kPack>
struct MaxOfPack {
  using scalar_t = typename Cvt::scalar_t;
  using P = Pack<scalar_t, kPack>;
  P best;
  SEGBLOCKS_HOST_DEVICE MaxOfPack() {
    const scalar_t lowest = Cvt::round(-Cvt::infinity());
    SEGBLOCKS_UNROLL
    for (int l = 0; l < kPack; ++l) best.v[l] = lowest;
  }
  SEGBLOCKS_HOST_DEVICE void add(const P& x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    constexpr bool kHalf2 = kPack % 2 == 0 && std::is_same<scalar_t, __half>::value;
    constexpr bool kBf162 = kPack % 2 == 0 && std::is_same<scalar_t, __nv_bfloat16>::value;
#else
    constexpr bool kHalf2 = false, kBf162 = false;
#endif
    if constexpr (kHalf2) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
      SEGBLOCKS_UNROLL
      for (int l = 0; l < kPack; l += 2) {
        *reinterpret_cast<__half2*>(&best.v[l]) =
            __hmax2_nan(*reinterpret_cast<const __half2*>(&best.v[l]), *reinterpret_cast<const __half2*>(&x.v[l]));
      }
#endif
    } else if constexpr (kBf162) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
      SEGBLOCKS_UNROLL
      for (int l = 0; l < kPack; l += 2) {
        *reinterpret_cast<__nv_bfloat162*>(&best.v[l]) = __hmax2_nan(
            *reinterpret_cast<const __nv_bfloat162*>(&best.v[l]), *reinterpret_cast<const __nv_bfloat162*>(&x.v[l]));
      }
#endif
    } else {
      SEGBLOCKS_UNROLL
      for (int l = 0; l < kPack; ++l) {
        const auto v = Cvt::to_acc(x.v[l]);
        if (v > Cvt::to_acc(best.v[l]) || v != v) best.v[l] = x.v[l];
      }
    }
  }
  SEGBLOCKS_HOST_DEVICE void add(const scalar_t* p) { add(load_pack<scalar_t, kPack>(p)); }
  SEGBLOCKS_HOST_DEVICE void store(scalar_t* out) const { *reinterpret_cast<P*>(out) = best; }
};

template <typename scalar_t, typename D>
struct MaxPoolUnitsParams {
  UnitsInput<scalar_t> in;
  scalar_t* out;  // [4Nh + Nl, C, uo, uo]: a tensor in NCHW or NHWC order, or the interior of padded tiles
  Strides4 out_strides;
  GridIndexer<D> grid;
  D channels_div;  // divides by C / kPack
  D out_side_div;  // divides by uo
  int64_t num_hr_units;  // 4 Nh
  int64_t kernel, stride, padding;
};

// Output element (kPack = 1) or channel pack `linear` of max_pool_units. kStridedOut: `out`
// is a view (the interiors of padded tiles) written through out_strides; otherwise it is
// contiguous in the output order (element `linear` at linear * kPack: fewer registers, which
// the kernel's bound of 40 makes count).
template <typename Cvt, bool kChannelsLast, typename D, int kPack = 1, bool kStridedOut = false>
SEGBLOCKS_HOST_DEVICE void max_pool_units_element(
    const MaxPoolUnitsParams<typename Cvt::scalar_t, D>& prm, int64_t linear) {
  static_assert(kPack == 1 || kChannelsLast, "channel packs are channels_last");
  using index_t = typename D::index_t;
  const index_t e = static_cast<index_t>(linear);
  const auto el = unravel_block_element<kChannelsLast>(e, prm.channels_div, prm.out_side_div);
  const UnitWindow<Cvt, kPack, D> win(prm.in, prm.grid, prm.num_hr_units, el.k, el.c * kPack, prm.padding, false);
  const index_t st = static_cast<index_t>(prm.stride), kk = static_cast<index_t>(prm.kernel);
  const index_t u = prm.grid.hr_side / 2;
  MaxOfPack<Cvt, kPack> best;
  // the window's corner in unit coordinates
  const index_t y0 = el.i * st - win.padding, x0 = el.j * st - win.padding;
  if (y0 >= 0 && y0 + kk <= u && x0 >= 0 && x0 + kk <= u) {
    // inside the unit (all but the first row and column of outputs for SwiftNet's 3x3 s2 p1)
    const typename Cvt::scalar_t* p = win.own_at(y0, x0);
    const index_t row = win.own_row_step(), col = win.own_col_step();
    for (index_t dy = 0; dy < kk; ++dy) {
      for (index_t dx = 0; dx < kk; ++dx) best.add(p + dy * row + dx * col);
    }
  } else {
    Pack<typename Cvt::scalar_t, kPack> x;
    for (index_t dy = 0; dy < kk; ++dy) {
      for (index_t dx = 0; dx < kk; ++dx) {
        const auto src = win.locate(el.i * st + dy, el.j * st + dx);
        if (src.kind == kPadConstant) continue;  // the image border is -inf: never the maximum
        win.fetch_values(src, x.v);
        best.add(x);
      }
    }
  }
  if (kStridedOut) {
    best.store(prm.out + StridesT<index_t>(prm.out_strides).offset(el.k, el.c * kPack, el.i, el.j));
  } else {
    best.store(prm.out + static_cast<int64_t>(e) * kPack);
  }
}

template <typename scalar_t, typename D>
struct MaxPoolDenseParams {
  const scalar_t* x;
  Strides4 strides;
  scalar_t* out;  // [N, C, Ho, Wo], contiguous in NCHW or NHWC order
  D channels_div, out_w_div, out_h_div;  // channels_div divides by C / kPack
  int64_t in_h, in_w;
  int64_t kernel, stride, padding;
};

template <typename Cvt, bool kChannelsLast, typename D, int kPack = 1>
SEGBLOCKS_HOST_DEVICE void max_pool_dense_element(const MaxPoolDenseParams<typename Cvt::scalar_t, D>& prm,
                                                  int64_t linear) {
  static_assert(kPack == 1 || kChannelsLast, "channel packs are channels_last");
  using index_t = typename D::index_t;
  const StridesT<index_t> s(prm.strides);
  const index_t e = static_cast<index_t>(linear);
  const auto el = unravel_element<kChannelsLast>(e, prm.channels_div, prm.out_h_div, prm.out_w_div);
  const index_t n = el.k, c = el.c * kPack, oy = el.i, ox = el.j;
  const index_t st = static_cast<index_t>(prm.stride), p = static_cast<index_t>(prm.padding);
  const index_t kk = static_cast<index_t>(prm.kernel);
  const index_t ih = static_cast<index_t>(prm.in_h), iw = static_cast<index_t>(prm.in_w);
  MaxOfPack<Cvt, kPack> best;
  for (index_t dy = 0; dy < kk; ++dy) {
    const index_t y = oy * st - p + dy;
    if (y < 0 || y >= ih) continue;
    for (index_t dx = 0; dx < kk; ++dx) {
      const index_t x = ox * st - p + dx;
      if (x < 0 || x >= iw) continue;
      best.add(prm.x + s.offset(n, c, y, x));
    }
  }
  best.store(prm.out + static_cast<int64_t>(e) * kPack);
}

}  // namespace segblocks
