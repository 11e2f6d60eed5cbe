// Shared by every kernel source: the one argument block all kernels take, and the grid-stride loop.
//
// Every kernel has the signature `extern "C" __global__ void name(Args a)`: the Rust side fills one `Args` (it
// mirrors `device::RawArgs`, field for field) and launches any kernel the same way. Every kernel walks its work
// items with GRID_STRIDE, so the result does not depend on the launch shape -- and a launch of a single thread
// (how the host emulation runs these sources, see host_shim.h) computes exactly what the GPU computes.
// Each work item writes its own output element(s) and sums in a fixed order: no atomics, results are
// reproducible from run to run.

typedef long long i64;

struct Args {
    const float* x[4];  // inputs
    float* y[2];        // outputs
    i64 n;              // number of work items
    i64 i[32];          // integer parameters (shapes, strides, op codes), per kernel
    float f[8];         // float parameters, per kernel
};

#define GRID_STRIDE(idx, count) \
    for (i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x; idx < (count); idx += (i64)blockDim.x * gridDim.x)

#define MAX_RANK 6
