// The halo-tile convolution (conv_halo.cuh): 16 x 16 output tiles, 64 output channels a job,
// the weights streamed through six stages; any C and K multiples of 64.
#include "conv_halo.cuh"

namespace segblocks {
namespace cuda {
SEGBLOCKS_DEFINE_HALO_CONV(halo_s16_n64, halo::HaloConv<6, false, false>)
}  // namespace cuda
}  // namespace segblocks
