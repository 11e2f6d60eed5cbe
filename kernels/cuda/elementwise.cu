// Element-wise kernels: activations and their derivatives, broadcasting binary ops and the sums their gradients
// need, and per-channel affine maps (inference batch-norm, convolution bias).

// Activation codes (a.i[0]); they mirror `device::Activation` in kernels/src/device/mod.rs.
#define ACT_CLAMP 0         // min(max(x, f0), f1): ReLU, ReLU6, Clip
#define ACT_LEAKY_RELU 1    // f0 = alpha
#define ACT_SIGMOID 2
#define ACT_SILU 3
#define ACT_HARD_SWISH 4
#define ACT_HARD_SIGMOID 5  // f0 = alpha, f1 = beta
#define ACT_TANH 6
#define ACT_ELU 7           // f0 = alpha
#define ACT_GELU 8          // exact (erf) form
#define ACT_SELU 9          // f0 = alpha, f1 = gamma
#define ACT_SOFTPLUS 10
#define ACT_ERF 11
#define ACT_POSITIVE_PART 12  // x > 0 ? x : 0, NaN to 0 (guided backpropagation's gradient filter)

__device__ float sigmoid_of(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ float activation(int code, float x, float p0, float p1) {
    switch (code) {
    case ACT_CLAMP: return x < p0 ? p0 : (x > p1 ? p1 : x);
    case ACT_LEAKY_RELU: return x < 0.0f ? x * p0 : x;
    case ACT_SIGMOID: return sigmoid_of(x);
    case ACT_SILU: return x * sigmoid_of(x);
    case ACT_HARD_SWISH: return x <= -3.0f ? 0.0f : (x >= 3.0f ? x : x * (x + 3.0f) / 6.0f);
    case ACT_HARD_SIGMOID: {
        float v = p0 * x + p1;
        return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    }
    case ACT_TANH: return tanhf(x);
    case ACT_ELU: return x > 0.0f ? x : p0 * (expf(x) - 1.0f);
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case ACT_SELU: return x > 0.0f ? p1 * x : p1 * p0 * (expf(x) - 1.0f);
    case ACT_SOFTPLUS: return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));
    case ACT_ERF: return erff(x);
    case ACT_POSITIVE_PART: return x > 0.0f ? x : 0.0f;
    }
    return x;
}

// d activation / dx at x, with the same conventions at the kinks as the CPU ops.
__device__ float activation_slope(int code, float x, float p0, float p1) {
    switch (code) {
    case ACT_CLAMP: return (x > p0 && x < p1) ? 1.0f : 0.0f;
    case ACT_LEAKY_RELU: return x < 0.0f ? p0 : 1.0f;
    case ACT_SIGMOID: {
        float s = sigmoid_of(x);
        return s * (1.0f - s);
    }
    case ACT_SILU: {
        float s = sigmoid_of(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case ACT_HARD_SWISH: return x < -3.0f ? 0.0f : (x > 3.0f ? 1.0f : (2.0f * x + 3.0f) / 6.0f);
    case ACT_HARD_SIGMOID: {
        float v = p0 * x + p1;
        return (v > 0.0f && v < 1.0f) ? p0 : 0.0f;
    }
    case ACT_TANH: {
        float t = tanhf(x);
        return 1.0f - t * t;
    }
    case ACT_ELU: return x > 0.0f ? 1.0f : p0 * expf(x);
    case ACT_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = expf(-0.5f * x * x) * 0.39894228040143268f;
        return cdf + x * pdf;
    }
    case ACT_SELU: return x > 0.0f ? p1 : p1 * p0 * expf(x);
    case ACT_SOFTPLUS: return sigmoid_of(x);
    case ACT_ERF: return 1.1283791670955126f * expf(-x * x);
    case ACT_POSITIVE_PART: return x > 0.0f ? 1.0f : 0.0f;
    }
    return 1.0f;
}

// y0[k] = act(x0[k]). i0 = code; f0, f1 = parameters.
extern "C" __global__ void activation_forward(Args a) {
    GRID_STRIDE(k, a.n) { a.y[0][k] = activation((int)a.i[0], a.x[0][k], a.f[0], a.f[1]); }
}

// y0[k] = x1[k] * act'(x0[k]): x0 the forward input, x1 the output gradient.
extern "C" __global__ void activation_backward(Args a) {
    GRID_STRIDE(k, a.n) { a.y[0][k] = a.x[1][k] * activation_slope((int)a.i[0], a.x[0][k], a.f[0], a.f[1]); }
}

// Binary op codes (a.i[0]); they mirror `device::BinaryOp`.
#define BIN_ADD 0
#define BIN_SUB 1
#define BIN_MUL 2
#define BIN_DIV 3

// Offsets into x0 and x1 of output element k. Layout of a.i from index 1: rank r, then the output sizes
// (MAX_RANK slots), then x0's strides per output axis (0 along broadcast axes), then x1's.
__device__ void broadcast_offsets(const i64* p, i64 k, i64* off0, i64* off1) {
    i64 rank = p[0];
    const i64* dims = p + 1;
    const i64* s0 = p + 1 + MAX_RANK;
    const i64* s1 = p + 1 + 2 * MAX_RANK;
    i64 o0 = 0, o1 = 0;
    for (i64 d = rank - 1; d >= 0; d--) {
        i64 c = k % dims[d];
        k /= dims[d];
        o0 += c * s0[d];
        o1 += c * s1[d];
    }
    *off0 = o0;
    *off1 = o1;
}

__device__ float binary(int code, float u, float v) {
    switch (code) {
    case BIN_ADD: return u + v;
    case BIN_SUB: return u - v;
    case BIN_MUL: return u * v;
    case BIN_DIV: return u / v;
    }
    return u;
}

// y0 = x0 (op) x1 with broadcasting; a.n output elements.
extern "C" __global__ void binary_forward(Args a) {
    GRID_STRIDE(k, a.n) {
        i64 o0, o1;
        broadcast_offsets(a.i + 1, k, &o0, &o1);
        a.y[0][k] = binary((int)a.i[0], a.x[0][o0], a.x[1][o1]);
    }
}

// The gradient of one operand of a broadcasting binary op: for each element of that operand, the sum over the
// output elements it was broadcast to of dy * d(op)/d(operand). x0, x1: the forward operands (x0 may be unused),
// x2: dy. i0 = code, i1 = which operand (0 or 1); from i2 the broadcast layout of broadcast_offsets; then at
// i2 + 1 + 3 * MAX_RANK, per output axis, whether the operand is broadcast along it (1) or not (0).
// a.n = the operand's element count. The sum runs over the broadcast axes in row-major order.
extern "C" __global__ void binary_backward(Args a) {
    const i64* p = a.i + 2;
    i64 rank = p[0];
    const i64* dims = p + 1;
    const i64* spread = p + 1 + 3 * MAX_RANK;
    int code = (int)a.i[0];
    int which = (int)a.i[1];
    GRID_STRIDE(t, a.n) {
        // Output coordinates of this operand element along the axes it is not broadcast over.
        i64 fixed[MAX_RANK];
        i64 rest = t;
        i64 count = 1;
        for (i64 d = rank - 1; d >= 0; d--) {
            if (spread[d]) {
                fixed[d] = 0;
                count *= dims[d];
            } else {
                fixed[d] = rest % dims[d];
                rest /= dims[d];
            }
        }
        float sum = 0.0f;
        for (i64 j = 0; j < count; j++) {
            // Spread j over the broadcast axes, then form the flat output index.
            i64 r = j;
            i64 coord[MAX_RANK];
            for (i64 d = rank - 1; d >= 0; d--) {
                if (spread[d]) {
                    coord[d] = r % dims[d];
                    r /= dims[d];
                } else {
                    coord[d] = fixed[d];
                }
            }
            i64 k = 0;
            for (i64 d = 0; d < rank; d++) k = k * dims[d] + coord[d];
            i64 o0, o1;
            broadcast_offsets(p, k, &o0, &o1);
            float g = a.x[2][k];
            float u = a.x[0] ? a.x[0][o0] : 0.0f;
            float v = a.x[1] ? a.x[1][o1] : 0.0f;
            float d;
            switch (code) {
            case BIN_ADD: d = 1.0f; break;
            case BIN_SUB: d = which == 0 ? 1.0f : -1.0f; break;
            case BIN_MUL: d = which == 0 ? v : u; break;
            default: d = which == 0 ? 1.0f / v : -u / (v * v); break;
            }
            sum += g * d;
        }
        a.y[0][t] = sum;
    }
}

// y0[n, c, s] = x0[n, c, s] * x1[c] + (x2 ? x2[c] : 0). i0 = channels, i1 = spatial size; a.n = all elements.
extern "C" __global__ void channel_affine(Args a) {
    i64 channels = a.i[0], spatial = a.i[1];
    GRID_STRIDE(k, a.n) {
        i64 c = (k / spatial) % channels;
        float scale = a.x[1] ? a.x[1][c] : 1.0f;
        float shift = a.x[2] ? a.x[2][c] : 0.0f;
        a.y[0][k] = a.x[0][k] * scale + shift;
    }
}
