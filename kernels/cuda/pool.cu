// 2-D pooling over NCHW planes, forward and input gradient, one output (or input) element per work item.
//
// Geometry in a.i: 0 planes, 1 input height, 2 input width, 3 output height, 4 output width, 5 kernel height,
// 6 kernel width, 7 stride y, 8 stride x, 9 dilation y, 10 dilation x, 11 top, 12 left, 13 bottom, 14 right
// padding, 15 count_include_pad (average pooling).

struct Pool {
    i64 planes, h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, include_pad;
};

__device__ Pool pool_of(const i64* p) {
    Pool g;
    g.planes = p[0]; g.h = p[1]; g.w = p[2]; g.oh = p[3]; g.ow = p[4]; g.kh = p[5]; g.kw = p[6]; g.sh = p[7];
    g.sw = p[8]; g.dh = p[9]; g.dw = p[10]; g.pt = p[11]; g.pl = p[12]; g.pb = p[13]; g.pr = p[14];
    g.include_pad = p[15];
    return g;
}

// The in-plane index of the maximum of window (oy, ox) of `plane`: the first maximum in (ky, kx) order, or the
// first NaN; -1 when the window covers no pixel. Padding never wins.
__device__ i64 window_argmax(const Pool& g, const float* plane, i64 oy, i64 ox) {
    i64 best = -1;
    float top = 0.0f;
    for (i64 ky = 0; ky < g.kh; ky++) {
        i64 y = oy * g.sh - g.pt + ky * g.dh;
        if (y < 0 || y >= g.h) continue;
        for (i64 kx = 0; kx < g.kw; kx++) {
            i64 x = ox * g.sw - g.pl + kx * g.dw;
            if (x < 0 || x >= g.w) continue;
            float v = plane[y * g.w + x];
            if (best >= 0 && top != top) continue;  // a NaN already won
            if (best < 0 || v > top || v != v) {
                best = y * g.w + x;
                top = v;
            }
        }
    }
    return best;
}

extern "C" __global__ void max_pool_forward(Args a) {
    Pool g = pool_of(a.i);
    GRID_STRIDE(k, a.n) {
        i64 ox = k % g.ow, oy = (k / g.ow) % g.oh, p = k / (g.ow * g.oh);
        const float* plane = a.x[0] + p * g.h * g.w;
        i64 at = window_argmax(g, plane, oy, ox);
        a.y[0][k] = at < 0 ? 0.0f : plane[at];
    }
}

// x0: the forward input, x1: dy. Each input element gathers dy from the windows whose maximum it is.
extern "C" __global__ void max_pool_backward(Args a) {
    Pool g = pool_of(a.i);
    GRID_STRIDE(k, a.n) {
        i64 x = k % g.w, y = (k / g.w) % g.h, p = k / (g.w * g.h);
        const float* plane = a.x[0] + p * g.h * g.w;
        const float* grad = a.x[1] + p * g.oh * g.ow;
        float sum = 0.0f;
        for (i64 ky = 0; ky < g.kh; ky++) {
            i64 oy = tap_output(y, g.pt, ky, g.dh, g.sh, g.oh);
            if (oy < 0) continue;
            for (i64 kx = 0; kx < g.kw; kx++) {
                i64 ox = tap_output(x, g.pl, kx, g.dw, g.sw, g.ow);
                if (ox < 0) continue;
                if (window_argmax(g, plane, oy, ox) == y * g.w + x) sum += grad[oy * g.ow + ox];
            }
        }
        a.y[0][k] = sum;
    }
}

// Taps of window (oy, ox) that the average divides by: inside the padded input with count_include_pad, else
// inside the image.
__device__ i64 window_divisor(const Pool& g, i64 oy, i64 ox) {
    i64 lo_y = g.include_pad ? -g.pt : 0, hi_y = g.include_pad ? g.h + g.pb : g.h;
    i64 lo_x = g.include_pad ? -g.pl : 0, hi_x = g.include_pad ? g.w + g.pr : g.w;
    i64 rows = 0, cols = 0;
    for (i64 ky = 0; ky < g.kh; ky++) {
        i64 y = oy * g.sh - g.pt + ky * g.dh;
        rows += (y >= lo_y && y < hi_y) ? 1 : 0;
    }
    for (i64 kx = 0; kx < g.kw; kx++) {
        i64 x = ox * g.sw - g.pl + kx * g.dw;
        cols += (x >= lo_x && x < hi_x) ? 1 : 0;
    }
    return rows * cols;
}

extern "C" __global__ void avg_pool_forward(Args a) {
    Pool g = pool_of(a.i);
    GRID_STRIDE(k, a.n) {
        i64 ox = k % g.ow, oy = (k / g.ow) % g.oh, p = k / (g.ow * g.oh);
        const float* plane = a.x[0] + p * g.h * g.w;
        float sum = 0.0f;
        for (i64 ky = 0; ky < g.kh; ky++) {
            i64 y = oy * g.sh - g.pt + ky * g.dh;
            if (y < 0 || y >= g.h) continue;
            for (i64 kx = 0; kx < g.kw; kx++) {
                i64 x = ox * g.sw - g.pl + kx * g.dw;
                if (x >= 0 && x < g.w) sum += plane[y * g.w + x];
            }
        }
        i64 d = window_divisor(g, oy, ox);
        a.y[0][k] = d > 0 ? sum / (float)d : 0.0f;
    }
}

// x0: dy. Each input element gathers dy / divisor from the windows that read it.
extern "C" __global__ void avg_pool_backward(Args a) {
    Pool g = pool_of(a.i);
    GRID_STRIDE(k, a.n) {
        i64 x = k % g.w, y = (k / g.w) % g.h, p = k / (g.w * g.h);
        const float* grad = a.x[0] + p * g.oh * g.ow;
        float sum = 0.0f;
        for (i64 ky = 0; ky < g.kh; ky++) {
            i64 oy = tap_output(y, g.pt, ky, g.dh, g.sh, g.oh);
            if (oy < 0) continue;
            for (i64 kx = 0; kx < g.kw; kx++) {
                i64 ox = tap_output(x, g.pl, kx, g.dw, g.sw, g.ow);
                if (ox < 0) continue;
                i64 d = window_divisor(g, oy, ox);
                if (d > 0) sum += grad[oy * g.ow + ox] / (float)d;
            }
        }
        a.y[0][k] = sum;
    }
}

// y0[p] = the mean of plane p of x0. i0 = plane size; a.n = planes.
extern "C" __global__ void plane_mean(Args a) {
    i64 size = a.i[0];
    GRID_STRIDE(p, a.n) {
        const float* plane = a.x[0] + p * size;
        float sum = 0.0f;
        for (i64 s = 0; s < size; s++) sum += plane[s];
        a.y[0][p] = sum / (float)size;
    }
}

// y0[k] = x0[k / size] / size: the gradient of plane_mean. i0 = plane size; a.n = all elements.
extern "C" __global__ void plane_mean_backward(Args a) {
    i64 size = a.i[0];
    GRID_STRIDE(k, a.n) { a.y[0][k] = a.x[0][k / size] / (float)size; }
}
