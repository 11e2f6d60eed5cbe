// Kernels over the rows of a tensor's last axes, one row per work item: softmax and layer normalization, forward
// and input gradient. a.i[0] = row length m; a.n = rows. Each row is summed in index order.

// y0 = softmax of each row of x0 (the maximum subtracted first).
extern "C" __global__ void softmax_rows(Args a) {
    i64 m = a.i[0];
    GRID_STRIDE(r, a.n) {
        const float* x = a.x[0] + r * m;
        float* y = a.y[0] + r * m;
        float top = x[0];
        for (i64 k = 1; k < m; k++) top = x[k] > top ? x[k] : top;
        float sum = 0.0f;
        for (i64 k = 0; k < m; k++) {
            y[k] = expf(x[k] - top);
            sum += y[k];
        }
        for (i64 k = 0; k < m; k++) y[k] /= sum;
    }
}

// y0 = x0 * (x1 - sum(x1 * x0)) per row: the softmax input gradient from its output (x0) and output gradient (x1).
extern "C" __global__ void softmax_rows_backward(Args a) {
    i64 m = a.i[0];
    GRID_STRIDE(r, a.n) {
        const float* y = a.x[0] + r * m;
        const float* g = a.x[1] + r * m;
        float dot = 0.0f;
        for (i64 k = 0; k < m; k++) dot += g[k] * y[k];
        for (i64 k = 0; k < m; k++) a.y[0][r * m + k] = y[k] * (g[k] - dot);
    }
}

// Mean and 1 / sqrt(variance + eps) of one row (two passes, as the CPU op).
__device__ void row_stats(const float* x, i64 m, float eps, float* mean, float* inv) {
    float sum = 0.0f;
    for (i64 k = 0; k < m; k++) sum += x[k];
    float mu = sum / (float)m;
    float var = 0.0f;
    for (i64 k = 0; k < m; k++) var += (x[k] - mu) * (x[k] - mu);
    var /= (float)m;
    *mean = mu;
    *inv = 1.0f / sqrtf(var + eps);
}

// y0 = (x0 - mean) * inv * x1 + x2 per row (x2 may be absent). f0 = epsilon.
extern "C" __global__ void layer_norm_rows(Args a) {
    i64 m = a.i[0];
    GRID_STRIDE(r, a.n) {
        const float* x = a.x[0] + r * m;
        float mean, inv;
        row_stats(x, m, a.f[0], &mean, &inv);
        for (i64 k = 0; k < m; k++) {
            a.y[0][r * m + k] = (x[k] - mean) * inv * a.x[1][k] + (a.x[2] ? a.x[2][k] : 0.0f);
        }
    }
}

// The input gradient of layer_norm_rows: x0 = x, x1 = scale, x2 = dy. With g = dy * scale and xh the normalized
// row, dx = inv * (g - mean(g) - xh * mean(g * xh)).
extern "C" __global__ void layer_norm_rows_backward(Args a) {
    i64 m = a.i[0];
    GRID_STRIDE(r, a.n) {
        const float* x = a.x[0] + r * m;
        const float* dy = a.x[2] + r * m;
        float mean, inv;
        row_stats(x, m, a.f[0], &mean, &inv);
        float g_sum = 0.0f, gx_sum = 0.0f;
        for (i64 k = 0; k < m; k++) {
            float g = dy[k] * a.x[1][k];
            g_sum += g;
            gx_sum += g * (x[k] - mean) * inv;
        }
        float g_mean = g_sum / (float)m, gx_mean = gx_sum / (float)m;
        for (i64 k = 0; k < m; k++) {
            float g = dy[k] * a.x[1][k];
            a.y[0][r * m + k] = inv * (g - g_mean - (x[k] - mean) * inv * gx_mean);
        }
    }
}
