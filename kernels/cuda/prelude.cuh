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

// The output position whose window reads input position `pos` through tap `tap` (windows start at
// out * stride - pad, taps `dilation` apart), or -1 when no output window does: what every gather-style input
// gradient (col2im, the direct convolution's, the pools') walks.
__device__ i64 tap_output(i64 pos, i64 pad, i64 tap, i64 dilation, i64 stride, i64 outputs) {
    i64 t = pos + pad - tap * dilation;
    if (t < 0 || t % stride != 0 || t / stride >= outputs) return -1;
    return t / stride;
}
