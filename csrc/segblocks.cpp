// The segblocks extension module: op schemas and the Python module init, nothing else.
//
// Kernels register themselves per device at the bottom of their files
// (ops/cpu/*_kernel.cpp, ops/cuda/*_launch.cpp); fake kernels and autograd are registered in
// Python (segblocks_core/ops/_native.py). Importing segblocks_core._C is what makes
// torch.ops.segblocks.* available.
#include <torch/extension.h>
#include <torch/library.h>

#ifdef SEGBLOCKS_WITH_CUDA
#include "ops/cuda/pdl.cuh"
#endif

TORCH_LIBRARY(segblocks, m) {
  // forward ops: the signatures of segblocks_core.ops._reference
  m.def("split(Tensor x, Tensor hr_pos, Tensor lr_pos, int block_size) -> (Tensor, Tensor)");
  // block_pad(split(x), padding, "constant", 0) in one pass from x (a zero-padded
  // convolution's input tiles, without the blocks); inference only
  m.def(
      "split_padded(Tensor x, Tensor hr_pos, Tensor lr_pos, Tensor block_map, int block_size, int padding) "
      "-> (Tensor, Tensor)");
  m.def(
      "combine(Tensor highres, Tensor lowres, Tensor hr_pos, Tensor lr_pos, int grid_n, int grid_h, "
      "int grid_w) -> Tensor");
  // the same on units: split_units writes split's high-res blocks as their quarters followed
  // by the low-res blocks, [4Nh + Nl, C, b/2, b/2] (a quartered BlockTensor's storage, what
  // split + quarter + cat give); combine_units reads highres as units [4Nh, C, b/2, b/2].
  // Inference only (no derivative registered)
  m.def("split_units(Tensor x, Tensor hr_pos, Tensor lr_pos, int block_size) -> Tensor");
  m.def(
      "combine_units(Tensor highres, Tensor lowres, Tensor hr_pos, Tensor lr_pos, int grid_n, int grid_h, "
      "int grid_w) -> Tensor");
  m.def(
      "block_pad(Tensor highres, Tensor lowres, Tensor hr_pos, Tensor lr_pos, Tensor block_map, "
      "int padding, str mode, float value) -> (Tensor, Tensor)");
  // BlockPad into equal-size tiles: each high-res block as four padded quarters ("units"),
  // then the padded low-res blocks, in one tensor [4Nh + Nl, C, h/2+2p, h/2+2p] that one
  // convolution runs on; `quartered`: highres is itself stored as units [4Nh, C, h/2, h/2];
  // pre_scale/pre_shift ([C], the input's dtype): every value read is first
  // relu(x * pre_scale + pre_shift) (an eval BatchNorm + ReLU before the convolution).
  // Inference only (no derivative registered).
  m.def(
      "block_pad_units(Tensor highres, Tensor lowres, Tensor hr_pos, Tensor lr_pos, "
      "Tensor block_map, int padding, str mode, float value, bool quartered, "
      "Tensor? pre_scale=None, Tensor? pre_shift=None) -> Tensor");
  // backward partners (each is the adjoint of its forward: split <-> combine-like,
  // block_pad <-> gather-accumulate)
  m.def(
      "split_backward(Tensor grad_highres, Tensor grad_lowres, Tensor hr_pos, Tensor lr_pos, "
      "int grid_n, int grid_h, int grid_w) -> Tensor");
  m.def(
      "combine_backward(Tensor grad, Tensor hr_pos, Tensor lr_pos, int block_size) "
      "-> (Tensor, Tensor)");
  m.def(
      "block_pad_backward(Tensor grad_highres_padded, Tensor grad_lowres_padded, Tensor hr_pos, "
      "Tensor lr_pos, Tensor block_map, int padding, str mode) -> (Tensor, Tensor)");
  // fused segmentation head: bilinear upsampling x factor + argmax over channels -> uint8
  // labels, without the upsampled logits (ops/upsample_argmax.h); not differentiable
  m.def(
      "upsample_argmax(Tensor highres, Tensor lowres, Tensor hr_pos, Tensor lr_pos, "
      "Tensor block_map, int factor) -> Tensor");
  m.def("upsample_argmax_dense(Tensor logits, int factor) -> Tensor");
  // max pooling without indices (ops/max_pool.h): on units fused with BlockPad (-inf
  // border), and dense; inference only. On units, out_padding > 0: the output is
  // block_pad_units of that, out_padding px, zero image border ([4Nh + Nl, C, uo + 2q, uo + 2q],
  // a zero-padded convolution's input)
  m.def(
      "max_pool_units(Tensor highres, Tensor lowres, Tensor hr_pos, Tensor lr_pos, Tensor block_map, "
      "int kernel, int stride, int padding, bool quartered, int out_padding=0) -> Tensor");
  m.def("max_pool_dense(Tensor x, int kernel, int stride, int padding) -> Tensor");
  // SwiftNet's decoder step, bilinear x2 (+ skip) (ops/upsample2x.h): on units fused with
  // BlockPad (1 px, replicate), and dense; inference only. On units, post_scale/post_shift
  // ([C]): relu(x * post_scale + post_shift) of every output (the next convolution's eval
  // BatchNorm + ReLU); padding > 0: the output is block_pad_units of that, padding px,
  // zero image border ([4Nh + Nl, C, h + 2p, h + 2p], a zero-padded convolution's input)
  m.def(
      "upsample2x_units(Tensor highres, Tensor lowres, Tensor hr_pos, Tensor lr_pos, Tensor block_map, "
      "bool quartered, Tensor? skip=None, Tensor? post_scale=None, Tensor? post_shift=None, "
      "int padding=0) -> Tensor");
  m.def("upsample2x_dense(Tensor x, Tensor? skip=None) -> Tensor");
  // 3x3 convolution (stride 1 or 2) on units with BlockPad's zero halo gathered in the same pass,
  // + bias + residual, optional ReLU, optional BatchNorm + ReLU prologue (ops/conv_units.h);
  // `splits`: split-K of the CUDA kernel (0: chosen for the GPU; the result does not depend
  // on it beyond float32 summation order); CUDA only (tensor cores), the
  // reference everywhere else; inference only
  m.def(
      "conv3x3_units(Tensor highres, Tensor lowres, Tensor hr_pos, Tensor lr_pos, Tensor block_map, "
      "Tensor weight, Tensor? bias=None, Tensor? residual=None, bool relu=False, bool quartered=False, "
      "int stride=1, Tensor? pre_scale=None, Tensor? pre_shift=None, int splits=0) -> Tensor");
  // the complexity policy's per-cell texture (ops/complexity.h), float32 [N, H/f, W/f]
  m.def("cell_complexity(Tensor x, int channels, int factor, float floor) -> Tensor");
  // the same of normalize_frames(images, scale, shift, 3, dtype), from the uint8 frames
  // [N, H, W, 3] (each value normalised as it is read)
  m.def("cell_complexity_frames(Tensor images, Tensor scale, Tensor shift, ScalarType dtype, int factor, float floor) "
        "-> Tensor");
  // relu(x * scale + shift) per channel in one pass (an eval BatchNorm + ReLU; x channels_last
  // in 16-byte channel packs, ops/scale_shift_relu.h)
  m.def("scale_shift_relu(Tensor x, Tensor scale, Tensor shift) -> Tensor");
  // uint8 RGB frames [N, H, W, 3] -> the network input, written into out [N, C, H, W]
  // (channels_last): x * scale + shift per channel (one float32 fma), zero channels past the
  // third (ops/normalize.h)
  m.def("normalize_frames_(Tensor(a!) out, Tensor images, Tensor scale, Tensor shift) -> ()");
  // split_padded(normalize_frames(images, scale, shift, channels, dtype), ...) in one pass from
  // the uint8 frames: the stem's BlockPad-ed blocks (channels_last) without the normalised
  // map; inference only
  m.def(
      "split_padded_frames(Tensor images, Tensor scale, Tensor shift, Tensor hr_pos, Tensor lr_pos, "
      "Tensor block_map, int block_size, int padding, int channels, ScalarType dtype) -> (Tensor, Tensor)");
  // relu(conv2d(x, weight, bias, stride, padding) + residual) written into out [N, K, P, Q],
  // any view with channel stride 1 (e.g. the interiors of the next convolution's BlockPad-ed
  // tiles); residual likewise. `config`: the CUDA kernel's tile configuration
  // (segblocks_core.ops.cutlass_conv_configs(); CUTLASS, Hopper only); the CPU kernel, the
  // reference, ignores it (ops/conv_into.h)
  // padded [4Nh + Nl, C, u+2p, u+2p] (block_pad_units' tiles, contiguous or channels_last),
  // whose interiors are written: their p-px frames from the interiors by BlockPad's rules
  // (zero image border), in place; the interiors are read, never written
  m.def("block_pad_ring_(Tensor(a!) padded, Tensor hr_pos, Tensor lr_pos, Tensor block_map, int padding) -> ()");
  m.def(
      "conv_into_(Tensor(a!) out, Tensor x, Tensor weight, Tensor bias, Tensor? residual, int stride, "
      "int padding, int config) -> ()");
  // where each pixel of the units' 1-px BlockPad-ed tiles comes from, as rows of the source
  // [units' pixels | mean rows | zero row] (segblocks_core.halo, its fixed form;
  // ops/halo_index.h): index [4Nh + Nl, side+2, side+2] and mean_rows [Nl * (4 side + 4), 4],
  // int32, on the layout's device; inference only
  m.def("halo_index(Tensor hr_pos, Tensor lr_pos, Tensor block_map, int side) -> (Tensor, Tensor)");
  // the source's mean rows (unit_rows .. unit_rows + B - 1: the 2x2 means of their quads'
  // unit rows, BlockPad's rounding) and its zero row, in place; the unit rows are read only
  m.def("halo_means_(Tensor(a!) source, Tensor mean_rows, int unit_rows) -> ()");
  // the same head from block_pad_units' tiles (padding 1, replicate): no neighbour lookups
  m.def(
      "upsample_argmax_units(Tensor units_padded, Tensor hr_pos, Tensor lr_pos, Tensor block_map, "
      "int factor) -> Tensor");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "SegBlocks block ops (split, block_pad, combine): registers torch.ops.segblocks.*";
#ifdef SEGBLOCKS_WITH_CUDA
  m.attr("with_cuda") = true;
  m.def("programmatic_launch", [] { return segblocks::cuda::programmatic_launch_enabled(); },
        "Whether the CUDA kernels are launched programmatically on the current device (pdl.cuh)");
  m.def("programmatic_prefetch", [] { return segblocks::cuda::programmatic_prefetch_enabled(); },
        "Whether the BlockPad passes look their sources up before waiting for the kernel before (pdl.cuh)");
#else
  m.attr("with_cuda") = false;
#endif
}
