// Input validation and layout helpers shared by the CPU kernels and the CUDA launchers.
//
// Every check names the op and the argument, so a user who passes a wrong tensor learns
// which one. Checks only read sizes, strides, dtypes and devices: reading position values
// would be a device-to-host sync on CUDA (and break CUDA-graph capture), so the values of
// hr_pos / lr_pos / block_map are validated on the CPU only (check_layout_values_cpu) and
// trusted on the GPU, where they come from segblocks_core.layout.BlockLayout.
#pragma once

#include <ATen/ATen.h>

#include <initializer_list>
#include <string>
#include <tuple>
#include <vector>

#include "ops/block_indexing.h"

namespace segblocks {

// Memory format of an op's outputs: channels_last if any tensor input is unambiguously
// channels_last (channels_last-contiguous but not NCHW-contiguous), NCHW otherwise. The fake
// kernels in segblocks_core/ops/_native.py apply the same rule, so real and fake outputs have
// equal strides.
inline at::MemoryFormat output_memory_format(std::initializer_list<at::Tensor> tensors) {
  for (const auto& t : tensors) {
    if (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
      return at::MemoryFormat::ChannelsLast;
    }
  }
  return at::MemoryFormat::Contiguous;
}

inline Strides4 strides_of(const at::Tensor& t) {
  return Strides4{t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// Strides for a layout check (packable): a dimension of size 1 is never stepped along, and
// PyTorch leaves its stride ambiguous (an [N, C, 1, 1] tensor has strides [C, 1, 1, 1] in
// either memory format), so it counts as 0 (as 1 for channels: a pack's lanes are adjacent).
inline Strides4 layout_strides_of(const at::Tensor& t) {
  const auto free = [&](int d, int64_t as) { return t.size(d) == 1 ? as : t.stride(d); };
  return Strides4{free(0, 0), free(1, 1), free(2, 0), free(3, 0)};
}

inline void check_feature_tensor(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be a 4-D tensor [N, C, H, W], got ", t.dim(),
              "-D of shape ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name,
              " must be a floating-point tensor, got ", t.scalar_type());
}

inline void check_same(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                       const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
              " but ", ref_name, " has ", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name,
              " is on ", ref.device());
}

inline void check_positions(const char* op, const char* name, const at::Tensor& pos,
                            const at::Tensor& like) {
  TORCH_CHECK(pos.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK(pos.dim() == 1, op, ": ", name, " must be 1-D, got shape ", pos.sizes());
  TORCH_CHECK(pos.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ",
              pos.scalar_type());
  TORCH_CHECK(pos.device() == like.device(), op, ": ", name, " is on ", pos.device(),
              " but the feature tensors are on ", like.device());
}

inline void check_block_map(const char* op, const at::Tensor& block_map, const at::Tensor& like) {
  TORCH_CHECK(block_map.defined(), op, ": block_map is undefined");
  TORCH_CHECK(block_map.dim() == 3, op, ": block_map must be 3-D [N, GH, GW], got shape ",
              block_map.sizes());
  TORCH_CHECK(block_map.scalar_type() == at::kInt, op, ": block_map must be int32, got ",
              block_map.scalar_type());
  TORCH_CHECK(block_map.device() == like.device(), op, ": block_map is on ", block_map.device(),
              " but the feature tensors are on ", like.device());
}

inline void check_padding(const char* op, int64_t padding) {
  TORCH_CHECK(padding >= 0, op, ": padding must be >= 0, got ", padding);
}

inline bool parse_pad_mode(const char* op, const std::string& mode) {
  TORCH_CHECK(mode == "constant" || mode == "replicate", op,
              ": mode must be 'constant' or 'replicate', got '", mode, "'");
  return mode == "replicate";
}

// A pair of block tensors: highres [Nh, C, h, h] and lowres [Nl, C, h/2, h/2] (or both
// padded by `padding` on every side). Returns the grid with hr_side = h.
inline BlockGrid check_block_pair(const char* op, const char* hr_name, const at::Tensor& highres,
                                  const char* lr_name, const at::Tensor& lowres,
                                  const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                  int64_t padding) {
  check_feature_tensor(op, hr_name, highres);
  check_feature_tensor(op, lr_name, lowres);
  check_same(op, lr_name, lowres, hr_name, highres);
  check_positions(op, "hr_pos", hr_pos, highres);
  check_positions(op, "lr_pos", lr_pos, highres);
  const int64_t hr_side = highres.size(3) - 2 * padding;
  const int64_t lr_side = lowres.size(3) - 2 * padding;
  TORCH_CHECK(highres.size(2) == highres.size(3), op, ": ", hr_name,
              " blocks must be square, got shape ", highres.sizes());
  TORCH_CHECK(lowres.size(2) == lowres.size(3), op, ": ", lr_name,
              " blocks must be square, got shape ", lowres.sizes());
  TORCH_CHECK(hr_side >= 2 && hr_side % 2 == 0, op, ": ", hr_name,
              " block side must be even and >= 2", padding ? " after removing the padding" : "",
              ", got shape ", highres.sizes(), padding ? " with padding " : "",
              padding ? std::to_string(padding) : std::string());
  TORCH_CHECK(lr_side * 2 == hr_side, op, ": ", lr_name, " blocks must be half the side of ",
              hr_name, " blocks, got ", lr_name, " shape ", lowres.sizes(), " and ", hr_name,
              " shape ", highres.sizes());
  TORCH_CHECK(lowres.size(1) == highres.size(1), op, ": ", lr_name, " has ", lowres.size(1),
              " channels but ", hr_name, " has ", highres.size(1));
  TORCH_CHECK(highres.size(0) == hr_pos.size(0), op, ": ", hr_name, " has ", highres.size(0),
              " blocks but hr_pos has ", hr_pos.size(0), " positions");
  TORCH_CHECK(lowres.size(0) == lr_pos.size(0), op, ": ", lr_name, " has ", lowres.size(0),
              " blocks but lr_pos has ", lr_pos.size(0), " positions");
  BlockGrid g{};
  g.hr_side = hr_side;
  g.channels = highres.size(1);
  g.num_highres = highres.size(0);
  g.num_lowres = lowres.size(0);
  return g;
}

inline void check_grid_size(const char* op, BlockGrid& g, int64_t grid_n, int64_t grid_h,
                            int64_t grid_w) {
  TORCH_CHECK(grid_n >= 0 && grid_h >= 0 && grid_w >= 0, op,
              ": grid_n, grid_h and grid_w must be >= 0, got ", grid_n, ", ", grid_h, ", ", grid_w);
  TORCH_CHECK(grid_n * grid_h * grid_w == g.num_highres + g.num_lowres, op, ": the grid ", grid_n,
              "x", grid_h, "x", grid_w, " has ", grid_n * grid_h * grid_w,
              " cells but hr_pos and lr_pos hold ", g.num_highres, " + ", g.num_lowres,
              " positions");
  g.grid_n = grid_n;
  g.grid_h = grid_h;
  g.grid_w = grid_w;
}

// Dense map x [N, C, GH*b, GW*b] cut into blocks of side b (split, combine_backward).
inline BlockGrid check_dense_args(const char* op, const char* x_name, const at::Tensor& x,
                                  const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                  int64_t block_size) {
  check_feature_tensor(op, x_name, x);
  check_positions(op, "hr_pos", hr_pos, x);
  check_positions(op, "lr_pos", lr_pos, x);
  TORCH_CHECK(block_size >= 2 && block_size % 2 == 0, op,
              ": block_size must be an even number >= 2, got ", block_size);
  TORCH_CHECK(x.size(2) % block_size == 0 && x.size(3) % block_size == 0, op, ": ", x_name,
              " spatial size ", x.size(2), "x", x.size(3), " is not a multiple of block_size ",
              block_size);
  BlockGrid g{};
  g.hr_side = block_size;
  g.channels = x.size(1);
  g.num_highres = hr_pos.size(0);
  g.num_lowres = lr_pos.size(0);
  check_grid_size(op, g, x.size(0), x.size(2) / block_size, x.size(3) / block_size);
  return g;
}

inline void check_block_map_shape(const char* op, const at::Tensor& block_map, BlockGrid& g) {
  TORCH_CHECK(block_map.size(0) * block_map.size(1) * block_map.size(2) ==
                  g.num_highres + g.num_lowres,
              op, ": block_map of shape ", block_map.sizes(), " has ", block_map.numel(),
              " cells but hr_pos and lr_pos hold ", g.num_highres, " + ", g.num_lowres,
              " positions");
  g.grid_n = block_map.size(0);
  g.grid_h = block_map.size(1);
  g.grid_w = block_map.size(2);
}

// Per-op argument checks: the device-independent checks of each op, in the order the op runs
// them, shared by its CPU kernel (ops/cpu/*_kernel.cpp) and its CUDA launcher
// (ops/cuda/*_launch.cpp). The device-specific checks (check_layout_values_cpu on the CPU,
// check_cuda_tensor on CUDA) follow in the device files.

// A block pair (padding 0) on an explicit grid_n x grid_h x grid_w grid (combine,
// split_backward).
inline BlockGrid check_block_pair_on_grid(const char* op, const char* hr_name,
                                          const at::Tensor& highres, const char* lr_name,
                                          const at::Tensor& lowres, const at::Tensor& hr_pos,
                                          const at::Tensor& lr_pos, int64_t grid_n,
                                          int64_t grid_h, int64_t grid_w) {
  BlockGrid g = check_block_pair(op, hr_name, highres, lr_name, lowres, hr_pos, lr_pos,
                                 /*padding=*/0);
  check_grid_size(op, g, grid_n, grid_h, grid_w);
  return g;
}

// split(x, hr_pos, lr_pos, block_size)
inline BlockGrid check_split_args(const at::Tensor& x, const at::Tensor& hr_pos,
                                  const at::Tensor& lr_pos, int64_t block_size) {
  return check_dense_args("split", "x", x, hr_pos, lr_pos, block_size);
}

// split_padded(x, hr_pos, lr_pos, block_map, block_size, padding): split's checks, the
// block map on the grid of x, padding >= 0
inline BlockGrid check_split_padded_args(const at::Tensor& x, const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                         const at::Tensor& block_map, int64_t block_size, int64_t padding) {
  const char* op = "split_padded";
  BlockGrid g = check_dense_args(op, "x", x, hr_pos, lr_pos, block_size);
  check_padding(op, padding);
  check_block_map(op, block_map, x);
  TORCH_CHECK(block_map.size(0) == g.grid_n && block_map.size(1) == g.grid_h && block_map.size(2) == g.grid_w, op,
              ": block_map must have the grid shape of x [", g.grid_n, ", ", g.grid_h, ", ", g.grid_w, "], got ",
              block_map.sizes());
  return g;
}

// split_backward(grad_highres, grad_lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w)
inline BlockGrid check_split_backward_args(const at::Tensor& grad_highres,
                                           const at::Tensor& grad_lowres, const at::Tensor& hr_pos,
                                           const at::Tensor& lr_pos, int64_t grid_n,
                                           int64_t grid_h, int64_t grid_w) {
  return check_block_pair_on_grid("split_backward", "grad_highres", grad_highres, "grad_lowres",
                                  grad_lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w);
}

// combine(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w)
inline BlockGrid check_combine_args(const at::Tensor& highres, const at::Tensor& lowres,
                                    const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                    int64_t grid_n, int64_t grid_h, int64_t grid_w) {
  return check_block_pair_on_grid("combine", "highres", highres, "lowres", lowres, hr_pos, lr_pos,
                                  grid_n, grid_h, grid_w);
}

// combine_backward(grad, hr_pos, lr_pos, block_size)
inline BlockGrid check_combine_backward_args(const at::Tensor& grad, const at::Tensor& hr_pos,
                                             const at::Tensor& lr_pos, int64_t block_size) {
  return check_dense_args("combine_backward", "grad", grad, hr_pos, lr_pos, block_size);
}

// What block_pad and block_pad_backward need from their checked arguments.
struct BlockPadArgs {
  BlockGrid grid;  // with the grid shape taken from block_map
  bool replicate;  // mode == "replicate"
};

// block_pad / block_pad_backward: `pair_padding` is the padding the block pair already has
// (0 for the forward's inputs, `padding` for the backward's padded gradients).
inline BlockPadArgs check_pad_op_args(const char* op, const char* hr_name,
                                      const at::Tensor& highres, const char* lr_name,
                                      const at::Tensor& lowres, const at::Tensor& hr_pos,
                                      const at::Tensor& lr_pos, const at::Tensor& block_map,
                                      int64_t padding, c10::string_view mode,
                                      int64_t pair_padding) {
  check_padding(op, padding);
  const bool replicate = parse_pad_mode(op, std::string(mode));
  BlockGrid g = check_block_pair(op, hr_name, highres, lr_name, lowres, hr_pos, lr_pos,
                                 pair_padding);
  check_block_map(op, block_map, highres);
  check_block_map_shape(op, block_map, g);
  return BlockPadArgs{g, replicate};
}

// block_pad(highres, lowres, hr_pos, lr_pos, block_map, padding, mode, value)
inline BlockPadArgs check_block_pad_args(const at::Tensor& highres, const at::Tensor& lowres,
                                         const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                         const at::Tensor& block_map, int64_t padding,
                                         c10::string_view mode) {
  return check_pad_op_args("block_pad", "highres", highres, "lowres", lowres, hr_pos, lr_pos,
                           block_map, padding, mode, /*pair_padding=*/0);
}

// A quartered pair: highres holds units [4*Nh, C, u, u] (a quartered BlockTensor's
// storage), lowres [Nl, C, u, u]; the grid's hr_side is 2u (grid shape not set).
inline BlockGrid check_quartered_pair(const char* op, const at::Tensor& highres, const at::Tensor& lowres,
                                      const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                      const char* context = "") {
  check_feature_tensor(op, "highres", highres);
  check_feature_tensor(op, "lowres", lowres);
  check_same(op, "lowres", lowres, "highres", highres);
  check_positions(op, "hr_pos", hr_pos, highres);
  check_positions(op, "lr_pos", lr_pos, highres);
  TORCH_CHECK(highres.size(2) == highres.size(3) && lowres.size(2) == lowres.size(3) &&
                  highres.size(3) == lowres.size(3) && lowres.size(3) >= 1,
              op, ": ", context, "highres holds units of the low-res block side: expected "
              "square tiles of equal size, got highres ", highres.sizes(), " and lowres ", lowres.sizes());
  TORCH_CHECK(lowres.size(1) == highres.size(1), op, ": lowres has ", lowres.size(1),
              " channels but highres has ", highres.size(1));
  TORCH_CHECK(highres.size(0) == 4 * hr_pos.size(0), op, ": quartered highres has ", highres.size(0),
              " units but hr_pos has ", hr_pos.size(0), " positions (4 units each)");
  TORCH_CHECK(lowres.size(0) == lr_pos.size(0), op, ": lowres has ", lowres.size(0),
              " blocks but lr_pos has ", lr_pos.size(0), " positions");
  BlockGrid g{};
  g.hr_side = 2 * lowres.size(3);
  g.channels = highres.size(1);
  g.num_highres = hr_pos.size(0);
  g.num_lowres = lowres.size(0);
  return g;
}

// split_units(x, hr_pos, lr_pos, block_size): split's checks
inline BlockGrid check_split_units_args(const at::Tensor& x, const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                        int64_t block_size) {
  return check_dense_args("split_units", "x", x, hr_pos, lr_pos, block_size);
}

// combine_units(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w): a quartered pair
// on an explicit grid
inline BlockGrid check_combine_units_args(const at::Tensor& highres, const at::Tensor& lowres,
                                          const at::Tensor& hr_pos, const at::Tensor& lr_pos, int64_t grid_n,
                                          int64_t grid_h, int64_t grid_w) {
  BlockGrid g = check_quartered_pair("combine_units", highres, lowres, hr_pos, lr_pos);
  check_grid_size("combine_units", g, grid_n, grid_h, grid_w);
  return g;
}

// block_pad_units(highres, lowres, hr_pos, lr_pos, block_map, padding, mode, value,
//                 quartered): highres is [Nh, C, h, h] or, if quartered, its units
// [4*Nh, C, h/2, h/2]. The grid's hr_side is h either way.
inline void check_prologue(const char* op, const at::Tensor& like,
                           const std::optional<at::Tensor>& pre_scale,
                           const std::optional<at::Tensor>& pre_shift, const char* scale_name = "pre_scale",
                           const char* shift_name = "pre_shift") {
  TORCH_CHECK(pre_scale.has_value() == pre_shift.has_value(), op, ": ", scale_name, " and ", shift_name,
              " must be given together");
  if (!pre_scale.has_value()) return;
  const char* names[2] = {scale_name, shift_name};
  const at::Tensor* ts[2] = {&*pre_scale, &*pre_shift};
  for (int i = 0; i < 2; ++i) {
    const at::Tensor& t = *ts[i];
    TORCH_CHECK(t.dim() == 1 && t.size(0) == like.size(1), op, ": ", names[i], " must have shape [",
                like.size(1), "] (one value per channel), got ", t.sizes());
    check_same(op, names[i], t, "highres", like);
  }
}

inline BlockPadArgs check_block_pad_units_args(const at::Tensor& highres, const at::Tensor& lowres,
                                               const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                               const at::Tensor& block_map, int64_t padding,
                                               c10::string_view mode, bool quartered,
                                               const std::optional<at::Tensor>& pre_scale,
                                               const std::optional<at::Tensor>& pre_shift) {
  const char* op = "block_pad_units";
  if (highres.defined() && highres.dim() == 4) check_prologue(op, highres, pre_scale, pre_shift);
  if (!quartered) {
    return check_pad_op_args(op, "highres", highres, "lowres", lowres, hr_pos, lr_pos, block_map,
                             padding, mode, /*pair_padding=*/0);
  }
  check_padding(op, padding);
  const bool replicate = parse_pad_mode(op, std::string(mode));
  BlockGrid g = check_quartered_pair(op, highres, lowres, hr_pos, lr_pos, "with quartered=True ");
  check_block_map(op, block_map, highres);
  check_block_map_shape(op, block_map, g);
  return BlockPadArgs{g, replicate};
}

inline void check_pool_window(const char* op, int64_t kernel, int64_t stride, int64_t padding) {
  TORCH_CHECK(kernel >= 1 && stride >= 1, op, ": kernel and stride must be >= 1, got ", kernel, " and ",
              stride);
  TORCH_CHECK(padding >= 0 && 2 * padding <= kernel, op,
              ": padding must be between 0 and half the kernel size, got ", padding, " for kernel ", kernel);
}

// max_pool_units(highres, lowres, hr_pos, lr_pos, block_map, kernel, stride, padding,
//                quartered): the block inputs of block_pad_units and a pooling window.
inline BlockPadArgs check_max_pool_units_args(const at::Tensor& highres, const at::Tensor& lowres,
                                              const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                              const at::Tensor& block_map, int64_t kernel, int64_t stride,
                                              int64_t padding, bool quartered, int64_t out_padding = 0) {
  const char* op = "max_pool_units";
  check_pool_window(op, kernel, stride, padding);
  const BlockPadArgs a = check_block_pad_units_args(highres, lowres, hr_pos, lr_pos, block_map, padding,
                                                    "constant", quartered, std::nullopt, std::nullopt);
  const int64_t u = a.grid.hr_side / 2;
  TORCH_CHECK(u + 2 * padding >= kernel, op, ": the window (kernel ", kernel, ", padding ", padding,
              ") is larger than units of side ", u, " with their halo");
  const int64_t uo = (u + 2 * padding - kernel) / stride + 1;
  // BlockPad's limit for the output's tiles: at most their own side
  TORCH_CHECK(out_padding >= 0 && out_padding <= uo, op, ": out_padding must be in [0, ", uo,
              "] (the output units' side), got ", out_padding);
  return a;
}

inline void check_max_pool_dense_args(const char* op, const at::Tensor& x, int64_t kernel, int64_t stride,
                                      int64_t padding) {
  check_feature_tensor(op, "x", x);
  check_pool_window(op, kernel, stride, padding);
  TORCH_CHECK(x.size(2) + 2 * padding >= kernel && x.size(3) + 2 * padding >= kernel, op,
              ": input of shape ", x.sizes(), " is smaller than the window");
}

// The optional skip of upsample2x_*: a feature map of the output's shape, dtype and device.
inline void check_upsample_skip(const char* op, const std::optional<at::Tensor>& skip, const at::Tensor& like,
                                at::IntArrayRef out_shape) {
  if (!skip.has_value()) return;
  check_feature_tensor(op, "skip", *skip);
  check_same(op, "skip", *skip, "the input", like);
  TORCH_CHECK(skip->sizes() == out_shape, op, ": skip must have the output's shape ", out_shape, ", got ",
              skip->sizes());
}

// upsample2x_units(highres, lowres, hr_pos, lr_pos, block_map, quartered, skip, post_scale,
// post_shift, padding): the input is checked like block_pad_units' (padding 1, replicate);
// the epilogue like its prologue; padding >= 0
inline BlockPadArgs check_upsample2x_units_args(const at::Tensor& highres, const at::Tensor& lowres,
                                                const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                                const at::Tensor& block_map, bool quartered,
                                                const std::optional<at::Tensor>& skip,
                                                const std::optional<at::Tensor>& post_scale,
                                                const std::optional<at::Tensor>& post_shift, int64_t padding) {
  const char* op = "upsample2x_units";
  const BlockPadArgs a = check_block_pad_units_args(highres, lowres, hr_pos, lr_pos, block_map, 1, "replicate",
                                                    quartered, std::nullopt, std::nullopt);
  const BlockGrid& g = a.grid;
  check_upsample_skip(op, skip, highres, {4 * g.num_highres + g.num_lowres, g.channels, g.hr_side, g.hr_side});
  check_prologue(op, highres, post_scale, post_shift, "post_scale", "post_shift");
  check_padding(op, padding);
  return a;
}

// conv3x3_units(highres, lowres, hr_pos, lr_pos, block_map, weight, bias, residual, relu,
// quartered, stride, pre_scale, pre_shift): the input (and prologue) is checked like
// block_pad_units' (padding 1, zero border);
// stride 1 or 2; weight [Co, C, 3, 3], bias [Co] and residual [4Nh + Nl, Co, uo, uo] like
// the input (dtype, device)
inline BlockPadArgs check_conv3x3_units_args(const at::Tensor& highres, const at::Tensor& lowres,
                                             const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                             const at::Tensor& block_map, const at::Tensor& weight,
                                             const std::optional<at::Tensor>& bias,
                                             const std::optional<at::Tensor>& residual, bool quartered,
                                             int64_t stride, const std::optional<at::Tensor>& pre_scale,
                                             const std::optional<at::Tensor>& pre_shift) {
  const char* op = "conv3x3_units";
  TORCH_CHECK(stride == 1 || stride == 2, op, ": stride must be 1 or 2, got ", stride);
  const BlockPadArgs a = check_block_pad_units_args(highres, lowres, hr_pos, lr_pos, block_map, 1, "constant",
                                                    quartered, pre_scale, pre_shift);
  const BlockGrid& g = a.grid;
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == g.channels && weight.size(2) == 3 && weight.size(3) == 3, op,
              ": weight must have shape [out_channels, ", g.channels, ", 3, 3], got ", weight.sizes());
  check_same(op, "weight", weight, "highres", highres);
  const int64_t cout = weight.size(0);
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == cout, op, ": bias must have shape [", cout, "], got ",
                bias->sizes());
    check_same(op, "bias", *bias, "highres", highres);
  }
  if (residual.has_value()) {
    const int64_t uo = (g.hr_side / 2 - 1) / stride + 1;
    const std::vector<int64_t> shape{4 * g.num_highres + g.num_lowres, cout, uo, uo};
    TORCH_CHECK(residual->sizes() == at::IntArrayRef(shape), op, ": residual must have the output's shape ",
                at::IntArrayRef(shape), ", got ", residual->sizes());
    check_same(op, "residual", *residual, "highres", highres);
  }
  return a;
}

inline void check_upsample2x_dense_args(const at::Tensor& x, const std::optional<at::Tensor>& skip) {
  const char* op = "upsample2x_dense";
  check_feature_tensor(op, "x", x);
  check_upsample_skip(op, skip, x, {x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)});
}

inline void check_cell_complexity_args(const at::Tensor& x, int64_t channels, int64_t factor) {
  const char* op = "cell_complexity";
  check_feature_tensor(op, "x", x);
  TORCH_CHECK(channels >= 1 && channels <= x.size(1), op, ": channels must be in [1, ", x.size(1), "], got ",
              channels);
  TORCH_CHECK(factor >= 1 && x.size(2) % factor == 0 && x.size(3) % factor == 0, op, ": the image ",
              x.sizes(), " must divide into cells of ", factor, " x ", factor, " pixels");
}

// True if t is a channels_last contiguous 4-D tensor (size-1 dimensions' strides ignored).
inline bool channels_last_contiguous(const at::Tensor& t) {
  const int64_t c = t.size(1), h = t.size(2), w = t.size(3);
  return t.numel() == 0 || ((c == 1 || t.stride(1) == 1) && (w == 1 || t.stride(3) == c) &&
                            (h == 1 || t.stride(2) == w * c) && (t.size(0) == 1 || t.stride(0) == h * w * c));
}

// scale_shift_relu(x [N, C, H, W] channels_last, scale [C], shift [C])
inline void check_scale_shift_relu_args(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift) {
  const char* op = "scale_shift_relu";
  check_feature_tensor(op, "x", x);
  const at::ScalarType dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": x must be float32, float16 or bfloat16, got ", dtype);
  const int64_t pack = 16 / static_cast<int64_t>(x.element_size());
  TORCH_CHECK(channels_last_contiguous(x) && x.size(1) % pack == 0 &&
                  reinterpret_cast<uintptr_t>(x.const_data_ptr()) % 16 == 0,
              op, ": x must be channels_last contiguous, 16-byte aligned, with channels a multiple of ", pack,
              ", got shape ", x.sizes(), " and strides ", x.strides());
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"scale", scale}, {"shift", shift}}) {
    TORCH_CHECK(t.defined() && t.numel() == x.size(1) && t.is_contiguous() && t.scalar_type() == dtype &&
                    t.device() == x.device() && reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0,
                op, ": ", name, " must be ", x.size(1), " contiguous, 16-byte aligned values of x's dtype and device");
  }
}

// normalize_frames_(out [N, C, H, W], images uint8 [N, H, W, 3], scale float32 [3], shift float32 [3])
// uint8 RGB frames [N, H, W, 3] (contiguous) and the float32 [3] constants of normalize_frames
inline void check_frames(const char* op, const at::Tensor& images, const at::Tensor& scale, const at::Tensor& shift) {
  TORCH_CHECK(images.defined() && images.dim() == 4 && images.size(3) == 3, op,
              ": images must be uint8 RGB frames [N, H, W, 3], got shape ",
              images.defined() ? images.sizes() : at::IntArrayRef{});
  TORCH_CHECK(images.scalar_type() == at::kByte, op, ": images must be uint8, got ", images.scalar_type());
  TORCH_CHECK(images.is_contiguous(), op, ": images must be contiguous [N, H, W, 3], got strides ",
              images.strides());
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"scale", scale}, {"shift", shift}}) {
    TORCH_CHECK(t.defined() && t.dim() == 1 && t.size(0) == 3 && t.scalar_type() == at::kFloat && t.is_contiguous(),
                op, ": ", name, " must be a contiguous float32 tensor of 3 values");
    TORCH_CHECK(t.device() == images.device(), op, ": ", name, " is on ", t.device(), " but images is on ",
                images.device());
  }
}

inline void check_normalize_frames_args(const at::Tensor& out, const at::Tensor& images, const at::Tensor& scale,
                                        const at::Tensor& shift) {
  const char* op = "normalize_frames_";
  check_frames(op, images, scale, shift);
  TORCH_CHECK(out.defined() && out.dim() == 4 && out.size(0) == images.size(0) && out.size(1) >= 3 &&
                  out.size(2) == images.size(1) && out.size(3) == images.size(2),
              op, ": out must be [N, C >= 3, H, W] for images ", images.sizes(), ", got ",
              out.defined() ? out.sizes() : at::IntArrayRef{});
  const at::ScalarType dtype = out.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": out must be float32, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(out.device() == images.device(), op, ": out is on ", out.device(), " but images is on ",
              images.device());
  TORCH_CHECK(channels_last_contiguous(out), op, ": out must be channels_last contiguous, got strides ",
              out.strides());
}

// split_padded_frames(images, scale, shift, hr_pos, lr_pos, block_map, block_size, padding,
// channels, dtype): normalize_frames' frames and constants, split_padded's blocks on the
// frames' grid
inline BlockGrid check_split_padded_frames_args(const at::Tensor& images, const at::Tensor& scale,
                                                const at::Tensor& shift, const at::Tensor& hr_pos,
                                                const at::Tensor& lr_pos, const at::Tensor& block_map,
                                                int64_t block_size, int64_t padding, int64_t channels,
                                                at::ScalarType dtype) {
  const char* op = "split_padded_frames";
  check_frames(op, images, scale, shift);
  TORCH_CHECK(channels >= 3, op, ": channels must be >= 3 (RGB plus optional zero channels), got ", channels);
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": dtype must be float32, float16 or bfloat16, got ", dtype);
  check_positions(op, "hr_pos", hr_pos, images);
  check_positions(op, "lr_pos", lr_pos, images);
  check_padding(op, padding);
  TORCH_CHECK(block_size >= 2 && block_size % 2 == 0, op, ": block_size must be an even number >= 2, got ",
              block_size);
  TORCH_CHECK(images.size(1) % block_size == 0 && images.size(2) % block_size == 0, op, ": the frames' size ",
              images.size(1), "x", images.size(2), " is not a multiple of block_size ", block_size);
  BlockGrid g{};
  g.hr_side = block_size;
  g.channels = channels;
  g.num_highres = hr_pos.size(0);
  g.num_lowres = lr_pos.size(0);
  check_grid_size(op, g, images.size(0), images.size(1) / block_size, images.size(2) / block_size);
  check_block_map(op, block_map, images);
  TORCH_CHECK(block_map.size(0) == g.grid_n && block_map.size(1) == g.grid_h && block_map.size(2) == g.grid_w, op,
              ": block_map must have the frames' grid shape [", g.grid_n, ", ", g.grid_h, ", ", g.grid_w, "], got ",
              block_map.sizes());
  return g;
}

// cell_complexity_frames(images, scale, shift, dtype, factor, floor)
inline void check_cell_complexity_frames_args(const at::Tensor& images, const at::Tensor& scale,
                                              const at::Tensor& shift, at::ScalarType dtype, int64_t factor) {
  const char* op = "cell_complexity_frames";
  check_frames(op, images, scale, shift);
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": dtype must be float32, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(factor >= 1 && images.size(1) % factor == 0 && images.size(2) % factor == 0, op, ": the frames ",
              images.sizes(), " must divide into cells of ", factor, " x ", factor, " pixels");
}

// block_pad_ring_(padded, hr_pos, lr_pos, block_map, padding): the tiles' layout, checked
// like block_pad_units' quartered input (the interiors), and the tiles contiguous.
inline BlockPadArgs check_block_pad_ring_args(const at::Tensor& padded, const at::Tensor& hr_pos,
                                             const at::Tensor& lr_pos, const at::Tensor& block_map,
                                             int64_t padding) {
  const char* op = "block_pad_ring_";
  TORCH_CHECK(padded.defined() && padded.dim() == 4 && padded.size(2) == padded.size(3), op,
              ": padded must be square tiles [T, C, u+2p, u+2p], got ",
              padded.defined() ? padded.sizes() : at::IntArrayRef{});
  TORCH_CHECK(padding >= 1 && padded.size(3) > 2 * padding, op, ": padding must be >= 1 and leave an interior, got ",
              padding, " for tiles of side ", padded.size(3));
  TORCH_CHECK(padded.is_contiguous() || channels_last_contiguous(padded), op,
              ": padded must be contiguous or channels_last contiguous, got strides ", padded.strides());
  TORCH_CHECK(hr_pos.defined() && hr_pos.dim() == 1 && padded.size(0) >= 4 * hr_pos.size(0), op,
              ": padded has ", padded.size(0), " tiles, fewer than 4 per high-res position");
  const int64_t nh = 4 * hr_pos.size(0), u = padded.size(3) - 2 * padding;
  const at::Tensor interior = padded.narrow(2, padding, u).narrow(3, padding, u);
  return check_block_pad_units_args(interior.narrow(0, 0, nh), interior.narrow(0, nh, padded.size(0) - nh), hr_pos,
                                    lr_pos, block_map, padding, "constant", /*quartered=*/true, std::nullopt,
                                    std::nullopt);
}

// block_pad_backward(grad_highres_padded, grad_lowres_padded, hr_pos, lr_pos, block_map,
//                    padding, mode)
inline BlockPadArgs check_block_pad_backward_args(const at::Tensor& grad_highres_padded,
                                                  const at::Tensor& grad_lowres_padded,
                                                  const at::Tensor& hr_pos,
                                                  const at::Tensor& lr_pos,
                                                  const at::Tensor& block_map, int64_t padding,
                                                  c10::string_view mode) {
  return check_pad_op_args("block_pad_backward", "grad_highres_padded", grad_highres_padded,
                           "grad_lowres_padded", grad_lowres_padded, hr_pos, lr_pos, block_map,
                           padding, mode, /*pair_padding=*/padding);
}

// CPU only: position and slot values index memory, so check them (cheap: one value per
// grid cell). hr_pos and lr_pos must partition the grid (every cell exactly once, else
// combine would leave cells unwritten) and block_map must name each cell's slot.
// halo_index(hr_pos, lr_pos, block_map, side): the layout's positions and block map (the
// device of hr_pos), units of side >= 1; the grid with hr_side = 2 * side.
inline BlockGrid check_halo_index_args(const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                       const at::Tensor& block_map, int64_t side) {
  const char* op = "halo_index";
  TORCH_CHECK(hr_pos.defined(), op, ": hr_pos is undefined");
  check_positions(op, "hr_pos", hr_pos, hr_pos);
  check_positions(op, "lr_pos", lr_pos, hr_pos);
  check_block_map(op, block_map, hr_pos);
  TORCH_CHECK(side >= 1, op, ": side must be >= 1, got ", side);
  BlockGrid g{};
  g.hr_side = 2 * side;
  g.channels = 1;
  g.num_highres = hr_pos.size(0);
  g.num_lowres = lr_pos.size(0);
  check_block_map_shape(op, block_map, g);
  const int64_t tiles = 4 * g.num_highres + g.num_lowres;
  const int64_t rows = tiles * side * side + g.num_lowres * (4 * side + 4) + 1;
  constexpr int64_t kInt32Max = 2147483647;
  TORCH_CHECK(rows <= kInt32Max && tiles * (side + 2) * (side + 2) <= kInt32Max, op,
              ": ", tiles, " units of side ", side, " need more source rows than int32 indexes");
  return g;
}

// halo_index's outputs on `like`'s device, uninitialised: index [T, side+2, side+2] and
// mean_rows [Nl * (4 side + 4), 4], int32 (g from check_halo_index_args).
inline std::tuple<at::Tensor, at::Tensor> empty_halo_index(const at::Tensor& like, const BlockGrid& g) {
  const int64_t side = g.hr_side / 2, tiles = 4 * g.num_highres + g.num_lowres;
  const auto options = like.options().dtype(at::kInt);
  return {at::empty({tiles, side + 2, side + 2}, options), at::empty({g.num_lowres * (4 * side + 4), 4}, options)};
}

// halo_means_(source, mean_rows, unit_rows): source [unit_rows + B + 1, C] contiguous
// floating point, mean_rows [B, 4] int32 contiguous on its device.
inline void check_halo_means_args(const at::Tensor& source, const at::Tensor& mean_rows, int64_t unit_rows) {
  const char* op = "halo_means_";
  TORCH_CHECK(source.defined() && source.dim() == 2 && source.is_contiguous() &&
                  at::isFloatingType(source.scalar_type()),
              op, ": source must be a contiguous floating-point [rows, C] tensor, got ",
              source.defined() ? source.sizes() : at::IntArrayRef{});
  TORCH_CHECK(mean_rows.defined() && mean_rows.dim() == 2 && mean_rows.size(1) == 4 && mean_rows.is_contiguous() &&
                  mean_rows.scalar_type() == at::kInt,
              op, ": mean_rows must be a contiguous int32 [B, 4] tensor");
  TORCH_CHECK(mean_rows.device() == source.device(), op, ": mean_rows is on ", mean_rows.device(),
              " but source is on ", source.device());
  TORCH_CHECK(unit_rows >= 0 && source.size(0) == unit_rows + mean_rows.size(0) + 1, op, ": source has ",
              source.size(0), " rows, expected unit_rows + B + 1 = ", unit_rows + mean_rows.size(0) + 1);
}

inline void check_layout_values_cpu(const char* op, const at::Tensor& hr_pos,
                                    const at::Tensor& lr_pos, const at::Tensor* block_map,
                                    const BlockGrid& g) {
  const int64_t cells = g.grid_n * g.grid_h * g.grid_w;
  std::vector<int32_t> slot_of_cell(static_cast<size_t>(cells), 0);
  std::vector<char> seen(static_cast<size_t>(cells), 0);
  const at::Tensor positions[2] = {hr_pos.contiguous(), lr_pos.contiguous()};
  const char* names[2] = {"hr_pos", "lr_pos"};
  for (int which = 0; which < 2; ++which) {
    const int64_t* p = positions[which].data_ptr<int64_t>();
    for (int64_t k = 0; k < positions[which].numel(); ++k) {
      TORCH_CHECK(p[k] >= 0 && p[k] < cells, op, ": ", names[which], "[", k, "] = ", p[k],
                  " is outside the grid of ", cells, " cells");
      TORCH_CHECK(!seen[p[k]], op, ": grid cell ", p[k], " appears more than once in hr_pos/lr_pos");
      seen[p[k]] = 1;
      slot_of_cell[p[k]] = which == 0 ? static_cast<int32_t>(k) : static_cast<int32_t>(-1 - k);
    }
  }
  if (block_map != nullptr) {
    const at::Tensor bm = block_map->contiguous();
    const int32_t* m = bm.data_ptr<int32_t>();
    for (int64_t cell = 0; cell < cells; ++cell) {
      TORCH_CHECK(m[cell] == slot_of_cell[cell], op, ": block_map value ", m[cell], " at cell ",
                  cell, " disagrees with hr_pos/lr_pos (expected ", slot_of_cell[cell], ")");
    }
  }
}

}  // namespace segblocks
