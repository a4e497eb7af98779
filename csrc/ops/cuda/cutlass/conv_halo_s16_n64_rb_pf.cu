// The halo-tile convolution (conv_halo.cuh) for C = K = 64 (SwiftNet's layer 1): 16 x 16 output
// tiles, the nine taps' weights resident, each tap's fragments loaded under the previous tap's
// wgmmas.
#include "conv_halo.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_HALO_CONV(halo_s16_n64_rb_pf, halo::HaloConv<9, true, true>)
}  // namespace cuda
}  // namespace segblocks
