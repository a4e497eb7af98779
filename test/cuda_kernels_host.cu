// Host harness for the CUDA kernels' element functions (test/test_cuda_kernels_host.py).
//
// Runs the exact per-element code of csrc/ops/cuda/*.cuh (index arithmetic, both layouts,
// 32-bit fast-division and 64-bit paths, half/bfloat16 conversions) in a plain CPU loop, so
// machines without a GPU (CI, development) can check it against the pure-PyTorch reference.
// What it cannot check (launch configuration, the grid-stride loop, memory coalescing) is
// covered by the CUDA-parametrised tests in test/test_native_ops.py on a GPU host.
//
// Built by the test with: nvcc -std=c++17 -Icsrc -shared -Xcompiler -fPIC <this file>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/block_pad.cuh"
#include "ops/cuda/complexity.cuh"
#include "ops/cuda/conv_units.cuh"
#include "ops/cuda/max_pool.cuh"
#include "ops/cuda/normalize.cuh"
#include "ops/cuda/scale_shift_relu.cuh"
#include "ops/cuda/upsample2x.cuh"
#include "ops/cuda/upsample_argmax.cuh"

namespace {

using namespace segblocks;
using namespace segblocks::cuda;

struct RunOnHost {
  template <typename Params, void (*element)(const Params&, int64_t), int kMinBlocks = 1>  // (a GPU register bound)
  void operator()(const Params& prm, int64_t total) const {
    for (int64_t linear = 0; linear < total; ++linear) element(prm, linear);
  }
  // two-phase elements: each located, then stored, as located_grid_stride_kernel does
  template <typename Params, typename Located, Located (*locate)(const Params&, int64_t),
            void (*store)(const Params&, const Located&)>
  void located(const Params& prm, int64_t total) const {
    for (int64_t linear = 0; linear < total; ++linear) store(prm, locate(prm, linear));
  }
};

// conv3x3_units: the table, then every work item (output tile and K split) in turn, its
// 256 threads one after another through each phase of the kernel (halo tile and weight
// slab per chunk, multiply, epilogue), then the split-K reduction; the tensor cores'
// products are replaced by a float32 loop that reads A the way the kernel's ldmatrix does
// (row r at tap (dy, dx): halo pixel conv_tile_halo(r) + conv_tap_offset(dy, dx)).
struct RunConvOnHost {
  template <typename Cvt, typename D>
  void operator()(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm) const {
    for (int64_t e = 0; e < prm.tiling.m_tiles * prm.tiling.halo_pixels; ++e) conv_units_table_element<Cvt, D>(prm, e);
    const int64_t items = conv_units_items(prm);
    for (int64_t item = 0; item < items; ++item) run_item<Cvt, D>(prm, conv_units_item(prm, item));
    if (prm.splits > 1) {
      for (int64_t e = 0; e < prm.rows * (prm.cout / kConvPack); ++e) conv_units_reduce_element<Cvt, D>(prm, e);
    }
  }

  template <typename Cvt, typename D>
  static void run_item(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm, const ConvItem& it) {
    using scalar_t = typename Cvt::scalar_t;
    struct alignas(16) Row {
      scalar_t v[kConvPitch];
    };
    const int64_t hp_count = prm.tiling.halo_pixels;
    const auto* table = prm.table + it.m_tile * hp_count;
    std::vector<Row> halo(hp_count), slab(9 * kConvBN);
    std::vector<float> c(kConvBM * kConvCPitch, 0.0f);
    std::vector<ConvHaloGather<Cvt, D>> gather;
    for (int t = 0; t < kConvThreads; ++t) gather.emplace_back(prm);
    std::vector<int64_t> origin;
    for (int r = 0; r < kConvBM; ++r) origin.push_back(conv_tile_halo(prm.tiling, it.m_tile, r));
    const ConvChunks range = conv_units_split_chunks(prm, it.split);
    for (int64_t chunk = range.first; chunk < range.last; ++chunk) {
      for (int t = 0; t < kConvThreads; ++t) {  // thread t's share of the stage
        for (int64_t hp = t; hp < hp_count; hp += kConvThreads) {
          for (int p = 0; p < kConvPacksPerPixel; ++p) {
            const int64_t ch = chunk * kConvBK + p * kConvPack;
            scalar_t* dst = halo[hp].v + p * kConvPack;
            const scalar_t* src = gather[t].copy_source(table[hp], ch);
            if (src != nullptr) {  // the GPU's cp.async: a 16-byte copy
              std::memcpy(dst, src, 16);
            } else {
              gather[t].compute(table[hp], ch, dst);
            }
          }
        }
        for (int e = t; e < kConvSlabPacks; e += kConvThreads) {
          std::memcpy(slab[0].v + conv_slab_offset(e), conv_slab_source(prm, it.n_tile, chunk, e), 16);
        }
      }
      for (int tap = 0; tap < 9; ++tap) {
        const int64_t offset = conv_tap_offset(prm.tiling, tap / 3, tap % 3);
        for (int r = 0; r < kConvBM; ++r) {
          const scalar_t* a = halo[origin[r] + offset].v;
          for (int n = 0; n < kConvBN; ++n) {
            const scalar_t* b = slab[tap * kConvBN + n].v;
            float sum = 0.0f;
            for (int k = 0; k < kConvBK; ++k) sum += Cvt::to_acc(a[k]) * Cvt::to_acc(b[k]);
            c[r * kConvCPitch + n] += sum;
          }
        }
      }
    }
    for (int t = 0; t < kConvThreads; ++t) conv_units_epilogue<Cvt, D>(prm, it.m_tile, it.n_tile, it.split, c.data(), t);
  }
};

BlockGrid grid_from(const int64_t* g) { return BlockGrid{g[0], g[1], g[2], g[3], g[4], g[5], g[6]}; }
Strides4 strides_from(const int64_t* s) { return Strides4{s[0], s[1], s[2], s[3]}; }

// dtype codes: 0 float32, 1 float64, 2 float16, 3 bfloat16
template <typename F>
int with_dtype(int dtype, F&& f) {
  switch (dtype) {
    case 0: f(float{}); return 0;
    case 1: f(double{}); return 0;
    case 2: f(__half{}); return 0;
    case 3: f(__nv_bfloat16{}); return 0;
    default: return 1;
  }
}

}  // namespace

extern "C" {

// dense -> blocks (split: lowres_scale 0.25; combine_backward: 1.0)
int segblocks_host_dense_to_blocks(int dtype, const void* dense, const int64_t* dense_strides,
                                   void* highres, void* lowres, const int64_t* hr_pos,
                                   const int64_t* lr_pos, const int64_t* grid, double lowres_scale,
                                   int channels_last, int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_dense_to_blocks(static_cast<const T*>(dense), strides_from(dense_strides),
                         static_cast<T*>(highres), static_cast<T*>(lowres), hr_pos, lr_pos,
                         grid_from(grid), lowres_scale, channels_last != 0, index32 != 0, RunOnHost{});
  });
}

// uint8 frames -> the padded blocks of their normalised map (split_padded_frames)
int segblocks_host_split_padded_frames(int dtype, const uint8_t* images, const float* scale, const float* shift,
                                       int64_t height, int64_t width, void* highres, void* lowres,
                                       const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                                       const int64_t* grid, int64_t padding, int index32) {
  if (dtype == 1) return 1;  // float64: not a normalize_frames dtype
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, double>) {
      with_split_padded_frames(images, scale, shift, height, width, static_cast<T*>(highres), static_cast<T*>(lowres),
                               hr_pos, lr_pos, block_map, grid_from(grid), padding, index32 != 0, RunOnHost{});
    }
  });
}

// dense -> units [4 Nh + Nl, C, b/2, b/2] (split_units)
int segblocks_host_split_units(int dtype, const void* dense, const int64_t* dense_strides, void* units,
                               const int64_t* hr_pos, const int64_t* lr_pos, const int64_t* grid, int channels_last,
                               int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_dense_to_units(static_cast<const T*>(dense), strides_from(dense_strides), static_cast<T*>(units), hr_pos,
                        lr_pos, grid_from(grid), channels_last != 0, index32 != 0, RunOnHost{});
  });
}

int segblocks_host_split_padded(int dtype, const void* dense, const int64_t* dense_strides, void* highres,
                                void* lowres, const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                                const int64_t* grid, int64_t padding, int channels_last, int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_split_padded(static_cast<const T*>(dense), strides_from(dense_strides), static_cast<T*>(highres),
                      static_cast<T*>(lowres), hr_pos, lr_pos, block_map, grid_from(grid), padding, channels_last != 0,
                      index32 != 0, RunOnHost{});
  });
}

// blocks -> dense (combine: lowres_scale 1.0; split_backward: 0.25; hr_unit b/2:
// combine_units, highres given as units)
int segblocks_host_blocks_to_dense(int dtype, const void* highres, const int64_t* highres_strides,
                                   const void* lowres, const int64_t* lowres_strides, void* dense,
                                   const int64_t* hr_pos, const int64_t* lr_pos, const int64_t* grid,
                                   double lowres_scale, int channels_last, int index32, int64_t hr_unit) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_blocks_to_dense(static_cast<const T*>(highres), strides_from(highres_strides),
                         static_cast<const T*>(lowres), strides_from(lowres_strides),
                         static_cast<T*>(dense), hr_pos, lr_pos, grid_from(grid), lowres_scale,
                         channels_last != 0, index32 != 0, RunOnHost{}, hr_unit);
  });
}

int segblocks_host_block_pad(int dtype, const void* highres, const int64_t* highres_strides,
                             const void* lowres, const int64_t* lowres_strides, void* highres_padded,
                             void* lowres_padded, const int64_t* hr_pos, const int64_t* lr_pos,
                             const int32_t* block_map, const int64_t* grid, int64_t padding,
                             int replicate, double value, int channels_last, int index32,
                             int64_t hr_unit_in, int64_t hr_unit_out, const void* pre_scale,
                             const void* pre_shift) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_block_pad(static_cast<const T*>(highres), strides_from(highres_strides),
                   static_cast<const T*>(lowres), strides_from(lowres_strides),
                   static_cast<T*>(highres_padded), static_cast<T*>(lowres_padded), hr_pos, lr_pos,
                   block_map, grid_from(grid), padding, replicate != 0, value, channels_last != 0,
                   index32 != 0, hr_unit_in, hr_unit_out, static_cast<const T*>(pre_scale),
                   static_cast<const T*>(pre_shift), RunOnHost{});
  });
}

int segblocks_host_block_pad_backward(int dtype, const void* grad_hr_padded,
                                      const int64_t* grad_hr_padded_strides,
                                      const void* grad_lr_padded,
                                      const int64_t* grad_lr_padded_strides, void* grad_highres,
                                      void* grad_lowres, const int64_t* hr_pos,
                                      const int64_t* lr_pos, const int32_t* block_map,
                                      const int64_t* grid, int64_t padding, int replicate,
                                      int channels_last, int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_block_pad_backward(static_cast<const T*>(grad_hr_padded),
                            strides_from(grad_hr_padded_strides),
                            static_cast<const T*>(grad_lr_padded),
                            strides_from(grad_lr_padded_strides), static_cast<T*>(grad_highres),
                            static_cast<T*>(grad_lowres), hr_pos, lr_pos, block_map, grid_from(grid),
                            padding, replicate != 0, channels_last != 0, index32 != 0, RunOnHost{});
  });
}

int segblocks_host_upsample_argmax(int dtype, const void* highres, const int64_t* highres_strides,
                                   const void* lowres, const int64_t* lowres_strides, uint8_t* labels,
                                   const int32_t* block_map, const int64_t* grid, int64_t factor,
                                   int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_upsample_argmax(static_cast<const T*>(highres), strides_from(highres_strides),
                         static_cast<const T*>(lowres), strides_from(lowres_strides), labels, block_map,
                         grid_from(grid), factor, index32 != 0, RunOnHost{});
  });
}

int segblocks_host_upsample_argmax_units(int dtype, const void* units, const int64_t* strides,
                                         uint8_t* labels, const int64_t* hr_pos, const int64_t* lr_pos,
                                         const int64_t* grid, int64_t factor, int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_upsample_argmax_units(static_cast<const T*>(units), strides_from(strides), labels, hr_pos, lr_pos,
                               grid_from(grid), factor, index32 != 0, RunOnHost{});
  });
}

int segblocks_host_max_pool_units(int dtype, const void* highres, const int64_t* highres_strides,
                                  const void* lowres, const int64_t* lowres_strides, void* out,
                                  const int64_t* out_strides, const int64_t* hr_pos, const int64_t* lr_pos,
                                  const int32_t* block_map, const int64_t* grid, int64_t kernel, int64_t stride,
                                  int64_t padding, int quartered, int channels_last, int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_max_pool_units(static_cast<const T*>(highres), strides_from(highres_strides),
                        static_cast<const T*>(lowres), strides_from(lowres_strides), static_cast<T*>(out),
                        strides_from(out_strides), hr_pos,
                        lr_pos, block_map, grid_from(grid), kernel, stride, padding, quartered != 0,
                        channels_last != 0, index32 != 0, RunOnHost{});
  });
}

int segblocks_host_max_pool_dense(int dtype, const void* x, const int64_t* strides, void* out, int64_t n,
                                  int64_t channels, int64_t h, int64_t w, int64_t kernel, int64_t stride,
                                  int64_t padding, int channels_last, int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_max_pool_dense(static_cast<const T*>(x), strides_from(strides), static_cast<T*>(out), n, channels, h, w,
                        kernel, stride, padding, channels_last != 0, index32 != 0, RunOnHost{});
  });
}

int segblocks_host_upsample2x_units(int dtype, const void* highres, const int64_t* highres_strides,
                                    const void* lowres, const int64_t* lowres_strides, const void* skip,
                                    const int64_t* skip_strides, void* out, const int64_t* out_strides,
                                    const void* post_scale, const void* post_shift, const int64_t* hr_pos,
                                    const int64_t* lr_pos, const int32_t* block_map, const int64_t* grid,
                                    int quartered, int channels_last, int index32, int patch) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_upsample2x_units(static_cast<const T*>(highres), strides_from(highres_strides),
                          static_cast<const T*>(lowres), strides_from(lowres_strides), static_cast<const T*>(skip),
                          strides_from(skip_strides), static_cast<T*>(out), strides_from(out_strides),
                          static_cast<const T*>(post_scale), static_cast<const T*>(post_shift), hr_pos, lr_pos,
                          block_map, grid_from(grid), quartered != 0, channels_last != 0, index32 != 0, RunOnHost{},
                          static_cast<UpsamplePatch>(patch));
  });
}

int segblocks_host_block_pad_ring(int dtype, void* padded, const int64_t* hr_pos, const int64_t* lr_pos,
                                  const int32_t* block_map, const int64_t* grid, int64_t padding, int replicate,
                                  double value, int channels_last, int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_block_pad_ring(static_cast<T*>(padded), hr_pos, lr_pos, block_map, grid_from(grid), padding,
                        replicate != 0, value, channels_last != 0, index32 != 0, RunOnHost{});
  });
}

int segblocks_host_upsample2x_dense(int dtype, const void* x, const int64_t* strides, const void* skip,
                                    const int64_t* skip_strides, void* out, int64_t n, int64_t channels, int64_t h,
                                    int64_t w, int channels_last, int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_upsample2x_dense(static_cast<const T*>(x), strides_from(strides), static_cast<const T*>(skip),
                          strides_from(skip_strides), static_cast<T*>(out), n, channels, h, w, channels_last != 0,
                          index32 != 0, RunOnHost{});
  });
}

// float32 (0), half (2) and bfloat16 (3), like the kernels
int segblocks_host_scale_shift_relu(int dtype, const void* x, void* out, const void* scale, const void* shift,
                                    int64_t elements, int64_t channels) {
  if (dtype == 1) return 1;
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, double>) {
      with_scale_shift_relu(static_cast<const T*>(x), static_cast<T*>(out), static_cast<const T*>(scale),
                            static_cast<const T*>(shift), elements, channels, RunOnHost{});
    }
  });
}

// float32 (0), half (2) and bfloat16 (3) outputs, like the kernels
int segblocks_host_normalize_frames(int dtype, const uint8_t* images, const float* scale, const float* shift,
                                    void* out, int64_t pixels, int64_t channels) {
  if (dtype == 1) return 1;
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, double>) {
      with_normalize_frames(images, scale, shift, static_cast<T*>(out), pixels, channels, RunOnHost{});
    }
  });
}

int segblocks_host_cell_complexity(int dtype, const void* x, const int64_t* strides, float* out, int64_t n,
                                   int64_t h, int64_t w, int64_t channels, int64_t factor, float floor,
                                   int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_cell_complexity(static_cast<const T*>(x), strides_from(strides), out, n, h, w, channels, factor, floor,
                         index32 != 0, RunOnHost{});
  });
}

// float32 (0), half (2) and bfloat16 (3): normalize_frames' dtypes
int segblocks_host_cell_complexity_frames(int dtype, const uint8_t* images, const float* scale, const float* shift,
                                          float* out, int64_t n, int64_t h, int64_t w, int64_t factor, float floor,
                                          int index32) {
  if (dtype == 1) return 1;
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, double>) {
      with_cell_complexity_frames<T>(images, scale, shift, out, n, h, w, factor, floor, index32 != 0, RunOnHost{});
    }
  });
}

// half (2) and bfloat16 (3) only, like the CUDA kernel
int segblocks_host_conv3x3_units(int dtype, const void* highres, const int64_t* highres_strides, const void* lowres,
                                 const int64_t* lowres_strides, const int64_t* hr_pos, const int64_t* lr_pos,
                                 const int32_t* block_map, const int64_t* grid, const void* weight, const void* bias,
                                 const void* residual, void* out, int64_t cout, int relu, int quartered,
                                 int64_t stride, const void* pre_scale, const void* pre_shift, int64_t splits,
                                 int index32) {
  if (dtype != 2 && dtype != 3) return 1;
  const int64_t u = grid[3] / 2, uo = (u - 1) / stride + 1;
  const ConvSplitPlan plan = conv_units_split_plan(grid[4] / kConvBK, splits);
  std::vector<float> partial(plan.splits > 1 ? plan.splits * (4 * grid[5] + grid[6]) * uo * uo * cout : 0, NAN);
  const ConvTiling tiling = conv_tiling(4 * grid[5] + grid[6], u, stride);
  std::vector<int64_t> table(conv_units_table_bytes(tiling) / 8 + 1);
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (sizeof(T) == 2) {
      with_conv_units(static_cast<const T*>(highres), strides_from(highres_strides), static_cast<const T*>(lowres),
                      strides_from(lowres_strides), hr_pos, lr_pos, block_map, grid_from(grid),
                      static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<const T*>(residual),
                      static_cast<T*>(out), cout, relu != 0, quartered != 0, stride, static_cast<const T*>(pre_scale),
                      static_cast<const T*>(pre_shift), plan, table.data(), partial.data(), index32 != 0,
                      RunConvOnHost{});
    }
  });
}

int segblocks_host_upsample_argmax_dense(int dtype, const void* logits, const int64_t* strides,
                                         uint8_t* labels, int64_t n, int64_t channels, int64_t h,
                                         int64_t w, int64_t factor, int index32) {
  return with_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_upsample_argmax_dense(static_cast<const T*>(logits), strides_from(strides), labels, n,
                               channels, h, w, factor, index32 != 0, RunOnHost{});
  });
}

}  // extern "C"
