// Local response normalization across channels (AlexNet, GoogLeNet), forward and input gradient:
// y_c = x_c * d_c^-beta with d_c = bias + alpha/size * sum over c' in [c - before, c + after] of x_c'^2.
//
// x viewed as [batch, channels, inner]. i0 channels, i1 inner, i2 before (= (size - 1) / 2), i3 after
// (= size - 1 - before); f0 bias, f1 alpha / size, f2 beta. One element per work item; sums in channel order.

// d_c at (b, c, r), `at` pointing to (b, 0, r).
__device__ float lrn_denominator(const float* at, i64 c, i64 channels, i64 inner, i64 before, i64 after,
                                 float bias, float scale) {
    i64 lo = c - before < 0 ? 0 : c - before;
    i64 hi = c + after + 1 > channels ? channels : c + after + 1;
    float sum = 0.0f;
    for (i64 q = lo; q < hi; q++) {
        float v = at[q * inner];
        sum += v * v;
    }
    return bias + scale * sum;
}

extern "C" __global__ void lrn_forward(Args a) {
    i64 channels = a.i[0], inner = a.i[1], before = a.i[2], after = a.i[3];
    GRID_STRIDE(k, a.n) {
        i64 r = k % inner, c = (k / inner) % channels, b = k / (inner * channels);
        const float* at = a.x[0] + b * channels * inner + r;
        float d = lrn_denominator(at, c, channels, inner, before, after, a.f[0], a.f[1]);
        a.y[0][k] = a.x[0][k] * powf(d, -a.f[2]);
    }
}

// x0: the forward input, x1: dy.
// dx_c = dy_c d_c^-beta - 2 beta (alpha/size) x_c * sum over j with c in W(j) of dy_j x_j d_j^(-beta-1), and
// c in W(j) exactly when j lies in [c - after, c + before].
extern "C" __global__ void lrn_backward(Args a) {
    i64 channels = a.i[0], inner = a.i[1], before = a.i[2], after = a.i[3];
    float bias = a.f[0], scale = a.f[1], beta = a.f[2];
    GRID_STRIDE(k, a.n) {
        i64 r = k % inner, c = (k / inner) % channels, b = k / (inner * channels);
        i64 base = b * channels * inner + r;
        const float* x = a.x[0] + base;
        const float* dy = a.x[1] + base;
        float own = powf(lrn_denominator(x, c, channels, inner, before, after, bias, scale), -beta);
        i64 lo = c - after < 0 ? 0 : c - after;
        i64 hi = c + before + 1 > channels ? channels : c + before + 1;
        float cross = 0.0f;
        for (i64 j = lo; j < hi; j++) {
            float d = lrn_denominator(x, j, channels, inner, before, after, bias, scale);
            cross += dy[j * inner] * x[j * inner] * powf(d, -beta - 1.0f);
        }
        a.y[0][k] = dy[c * inner] * own - 2.0f * beta * scale * x[c * inner] * cross;
    }
}
