// Host entry points of the torch-free CUDA kernels (defined in the *_kernel.cu files,
// explicitly instantiated for float, double, __half and __nv_bfloat16).
//
// Contract shared by all of them:
//   * feature inputs are read through their element strides (any layout, views included);
//   * outputs are contiguous in NCHW or, if `channels_last`, in NHWC order;
//   * position and block_map values are trusted (validated on the CPU side of the project;
//     reading them here would cost a device-to-host sync);
//   * `index32`: every offset, size and element count fits in int32 (the launcher checks),
//     which selects the faster 32-bit index arithmetic;
//   * kernels are launched on `stream` with no synchronisation and no allocation, so they
//     can be captured in a CUDA graph; the return value is the launch status.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops/block_indexing.h"

namespace segblocks {
namespace cuda {

// split: dense x -> highres (copy) + lowres (2x2 average).
template <typename scalar_t>
cudaError_t launch_split(const scalar_t* x, Strides4 x_strides, scalar_t* highres, scalar_t* lowres,
                         const int64_t* hr_pos, const int64_t* lr_pos, const BlockGrid& grid,
                         bool channels_last, bool index32, cudaStream_t stream);

// split_padded: dense x -> the blocks BlockPad-ed by `padding` px, zero image border
// (block_pad(split(x)) in one pass; block_copy.cuh).
template <typename scalar_t>
cudaError_t launch_split_padded(const scalar_t* x, Strides4 x_strides, scalar_t* highres, scalar_t* lowres,
                                const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                                const BlockGrid& grid, int64_t padding, bool channels_last, bool index32,
                                cudaStream_t stream);

// split_padded_frames: uint8 RGB frames [N, H, W, 3] -> the padded blocks of their
// normalised map (split_padded(normalize_frames(...)) in one pass; channels_last outputs).
template <typename scalar_t>
cudaError_t launch_split_padded_frames(const uint8_t* images, const float* scale, const float* shift, int64_t height,
                                       int64_t width, scalar_t* highres, scalar_t* lowres, const int64_t* hr_pos,
                                       const int64_t* lr_pos, const int32_t* block_map, const BlockGrid& grid,
                                       int64_t padding, bool index32, cudaStream_t stream);

// split_units: dense x -> units [4 Nh + Nl, C, b/2, b/2], contiguous in the output order:
// the high-res blocks' quarters (copies), then the low-res blocks (2x2 averages).
template <typename scalar_t>
cudaError_t launch_split_units(const scalar_t* x, Strides4 x_strides, scalar_t* units, const int64_t* hr_pos,
                               const int64_t* lr_pos, const BlockGrid& grid, bool channels_last, bool index32,
                               cudaStream_t stream);

// split_backward: grad blocks -> dense grad (high-res copied, low-res / 4 replicated 2x2).
template <typename scalar_t>
cudaError_t launch_split_backward(const scalar_t* grad_highres, Strides4 grad_highres_strides,
                                  const scalar_t* grad_lowres, Strides4 grad_lowres_strides,
                                  scalar_t* grad_x, const int64_t* hr_pos, const int64_t* lr_pos,
                                  const BlockGrid& grid, bool channels_last, bool index32,
                                  cudaStream_t stream);

// combine: blocks -> dense map (high-res copied, low-res nearest-upsampled x2); hr_unit
// b/2 (combine_units): highres is the blocks' units [4 Nh, C, b/2, b/2], read in place.
template <typename scalar_t>
cudaError_t launch_combine(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                           Strides4 lowres_strides, scalar_t* dense, const int64_t* hr_pos,
                           const int64_t* lr_pos, const BlockGrid& grid, bool channels_last,
                           bool index32, cudaStream_t stream, int64_t hr_unit = 0);

// combine_backward: dense grad -> grad blocks (high-res copied, low-res = 2x2 sums).
template <typename scalar_t>
cudaError_t launch_combine_backward(const scalar_t* grad, Strides4 grad_strides,
                                    scalar_t* grad_highres, scalar_t* grad_lowres,
                                    const int64_t* hr_pos, const int64_t* lr_pos,
                                    const BlockGrid& grid, bool channels_last, bool index32,
                                    cudaStream_t stream);

// block_pad: padded copies of every block, halos read from the neighbours. hr_unit_in /
// hr_unit_out (0 or h/2): the high-res input is stored as units / each high-res unit is
// padded on its own (block_pad_units; HrStridesT in ops/block_indexing.h). pre_scale /
// pre_shift (per channel, or nullptr): relu(x * scale + shift) applied to every value read.
template <typename scalar_t>
cudaError_t launch_block_pad(const scalar_t* highres, Strides4 highres_strides,
                             const scalar_t* lowres, Strides4 lowres_strides,
                             scalar_t* highres_padded, scalar_t* lowres_padded,
                             const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                             const BlockGrid& grid, int64_t padding, bool replicate, double value,
                             bool channels_last, bool index32, int64_t hr_unit_in,
                             int64_t hr_unit_out, const scalar_t* pre_scale, const scalar_t* pre_shift,
                             cudaStream_t stream);

// block_pad_backward: gradient of each block pixel gathered from every padded pixel that
// read it (deterministic: one thread per output element, fixed summation order).
template <typename scalar_t>
cudaError_t launch_block_pad_backward(const scalar_t* grad_highres_padded,
                                      Strides4 grad_highres_padded_strides,
                                      const scalar_t* grad_lowres_padded,
                                      Strides4 grad_lowres_padded_strides, scalar_t* grad_highres,
                                      scalar_t* grad_lowres, const int64_t* hr_pos,
                                      const int64_t* lr_pos, const int32_t* block_map,
                                      const BlockGrid& grid, int64_t padding, bool replicate,
                                      bool channels_last, bool index32, cudaStream_t stream);

// max_pool_units / max_pool_dense: max pooling without indices (ops/max_pool.h); on units
// the window reads through BlockPad's rules (-inf border), no padded copy is written.
template <typename scalar_t>
cudaError_t launch_max_pool_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                                  Strides4 lowres_strides, scalar_t* out, Strides4 out_strides, const int64_t* hr_pos,
                                  const int64_t* lr_pos, const int32_t* block_map, const BlockGrid& grid,
                                  int64_t kernel, int64_t stride, int64_t padding, bool quartered,
                                  bool channels_last, bool index32, cudaStream_t stream);

template <typename scalar_t>
cudaError_t launch_max_pool_dense(const scalar_t* x, Strides4 strides, scalar_t* out, int64_t n,
                                  int64_t channels, int64_t h, int64_t w, int64_t kernel, int64_t stride,
                                  int64_t padding, bool channels_last, bool index32, cudaStream_t stream);

// upsample2x_units / upsample2x_dense: bilinear x2 (+ skip, nullptr: none) (ops/upsample2x.h);
// on units the 1-px replicate halo is read through BlockPad's rules, no padded copy is written.
// units: `out` with `out_strides` (the output, or the interior of padded tiles: an exception
// to the contiguous-output rule), post_scale / post_shift (or nullptr): the epilogue
// relu(v * scale + shift).
template <typename scalar_t>
cudaError_t launch_upsample2x_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                                    Strides4 lowres_strides, const scalar_t* skip, Strides4 skip_strides,
                                    scalar_t* out, Strides4 out_strides, const scalar_t* post_scale,
                                    const scalar_t* post_shift, const int64_t* hr_pos, const int64_t* lr_pos,
                                    const int32_t* block_map, const BlockGrid& grid, bool quartered,
                                    bool channels_last, bool index32, int patch, cudaStream_t stream);

// block_pad_ring: the p-px frames of padded tiles [4Nh + Nl, C, h/2+2p, h/2+2p] (contiguous)
// filled in place from their interiors by BlockPad's rules (block_pad.cuh).
template <typename scalar_t>
cudaError_t launch_block_pad_ring(scalar_t* padded, const int64_t* hr_pos, const int64_t* lr_pos,
                                  const int32_t* block_map, const BlockGrid& grid, int64_t padding, bool replicate,
                                  double value, bool channels_last, bool index32, cudaStream_t stream);

template <typename scalar_t>
cudaError_t launch_upsample2x_dense(const scalar_t* x, Strides4 strides, const scalar_t* skip,
                                    Strides4 skip_strides, scalar_t* out, int64_t n, int64_t channels, int64_t h,
                                    int64_t w, bool channels_last, bool index32, cudaStream_t stream);

// halo_index: the units' halo index [T, side+2, side+2] and mean rows [Nl * (4 side + 4), 4],
// int32 (ops/halo_index.h); `grid` with hr_side = 2 * side.
cudaError_t launch_halo_index(const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                              const BlockGrid& grid, int32_t* index, int32_t* mean_rows, bool index32,
                              cudaStream_t stream);

// halo_means_: the source's mean rows and zero row, in place (ops/halo_index.h); `packed`: C
// and the source's start allow 16-byte packs.
template <typename scalar_t>
cudaError_t launch_halo_means(scalar_t* source, const int32_t* mean_rows, int64_t channels, int64_t unit_rows,
                              int64_t num_means, bool packed, cudaStream_t stream);

// scale_shift_relu: relu(x * scale + shift) per channel, [elements / C, C] (ops/scale_shift_relu.h).
template <typename scalar_t>
cudaError_t launch_scale_shift_relu(const scalar_t* x, scalar_t* out, const scalar_t* scale, const scalar_t* shift,
                                    int64_t elements, int64_t channels, cudaStream_t stream);

// normalize_frames: uint8 RGB frames -> the network input, [pixels, channels] (ops/normalize.h).
template <typename scalar_t>
cudaError_t launch_normalize_frames(const uint8_t* images, const float* scale, const float* shift, scalar_t* out,
                                    int64_t pixels, int64_t channels, cudaStream_t stream);

// cell_complexity: the policy's per-cell texture, float32 [N, H/f, W/f] (ops/complexity.h).
template <typename scalar_t>
cudaError_t launch_cell_complexity(const scalar_t* x, Strides4 strides, float* out, int64_t n, int64_t h,
                                   int64_t w, int64_t channels, int64_t factor, float floor, bool index32,
                                   cudaStream_t stream);

// cell_complexity_frames: cell_complexity of normalize_frames(images) (3 channels, scalar_t),
// normalising each value as it is read.
template <typename scalar_t>
cudaError_t launch_cell_complexity_frames(const uint8_t* images, const float* scale, const float* shift, float* out,
                                          int64_t n, int64_t h, int64_t w, int64_t factor, float floor, bool index32,
                                          cudaStream_t stream);

// upsample_argmax_units: the same labels from block_pad_units' padded tiles (padding 1).
template <typename scalar_t>
cudaError_t launch_upsample_argmax_units(const scalar_t* units, Strides4 strides, uint8_t* labels,
                                         const int64_t* hr_pos, const int64_t* lr_pos,
                                         const BlockGrid& grid, int64_t factor, bool index32,
                                         cudaStream_t stream);

// upsample_argmax: labels [N, GH*b*f, GW*b*f] uint8 = argmax over channels of the block
// logits upsampled x f (bilinear, BlockPad halo), without materialising the upsampled
// logits (ops/upsample_argmax.h).
template <typename scalar_t>
cudaError_t launch_upsample_argmax(const scalar_t* highres, Strides4 highres_strides,
                                   const scalar_t* lowres, Strides4 lowres_strides, uint8_t* labels,
                                   const int32_t* block_map, const BlockGrid& grid, int64_t factor,
                                   bool index32, cudaStream_t stream);

// upsample_argmax_dense: the same for a dense logits map [N, C, h, w] -> [N, h*f, w*f].
template <typename scalar_t>
cudaError_t launch_upsample_argmax_dense(const scalar_t* logits, Strides4 strides, uint8_t* labels,
                                         int64_t n, int64_t channels, int64_t h, int64_t w,
                                         int64_t factor, bool index32, cudaStream_t stream);

// conv3x3_units: 3x3 convolution (stride 1 or 2) on units, BlockPad's zero halo gathered in
// the same pass, + bias + residual, ReLU, optionally after a BatchNorm + ReLU prologue
// (ops/conv_units.h). half and bfloat16 only, tensor cores (sm_80+); `weight` is
// [Co, 3, 3, Ci] contiguous, the feature tensors channels_last and 16-byte aligned,
// Ci % kConvBK == 0, Co % kConvBN == 0, uo <= kConvMaxSide (the launcher checks). `table`
// is a workspace of conv_units_table_bytes; `sms` the GPU's multiprocessors (the thread
// blocks are persistent). Split-K in whole chunks (conv_units_split_plan): with splits > 1
// `partial` is a [splits, rows, Co] float32 workspace and a second kernel adds the splits
// in order.
template <typename scalar_t>
cudaError_t launch_conv3x3_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                                 Strides4 lowres_strides, const int64_t* hr_pos, const int64_t* lr_pos,
                                 const int32_t* block_map, const BlockGrid& grid, const scalar_t* weight,
                                 const scalar_t* bias, const scalar_t* residual, scalar_t* out, int64_t cout,
                                 bool relu, bool quartered, int64_t stride, const scalar_t* pre_scale,
                                 const scalar_t* pre_shift, int64_t splits, void* table, float* partial,
                                 bool index32, int sms, cudaStream_t stream);

}  // namespace cuda
}  // namespace segblocks
