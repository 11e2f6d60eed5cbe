// Lets a C++ compiler build the CUDA kernel sources for the host: every kernel runs as one thread of a one-block
// grid, which the grid-stride loops (prelude.cuh) turn into a plain loop over all work items. Used by the tests of
// the device executor on machines without a GPU (gradcam_kernels::device::host); never by the CUDA path.
#include <math.h>
#include <cfloat>
struct gradcam_dim3 { unsigned x, y, z; };
static const gradcam_dim3 blockIdx = {0, 0, 0};
static const gradcam_dim3 threadIdx = {0, 0, 0};
static const gradcam_dim3 blockDim = {1, 1, 1};
static const gradcam_dim3 gridDim = {1, 1, 1};
#define __global__
#define __device__ static inline
#define __forceinline__
