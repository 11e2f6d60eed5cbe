// 2-D convolution pieces for NCHW tensors and OIHW weights. Ungrouped convolutions run as im2col + a cuBLAS GEMM
// (and their input gradient as a GEMM + col2im); grouped and depthwise ones run directly, one output (or input
// gradient) element per work item.
//
// Geometry in a.i: 0 input channels, 1 input height, 2 input width, 3 kernel height, 4 kernel width,
// 5 stride y, 6 stride x, 7 dilation y, 8 dilation x, 9 top padding, 10 left padding, 11 output height,
// 12 output width, 13 groups, 14 output channels, 15 batch.

struct Geometry {
    i64 c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, groups, oc, batch;
};

__device__ Geometry geometry_of(const i64* p) {
    Geometry g;
    g.c = p[0]; g.h = p[1]; g.w = p[2]; g.kh = p[3]; g.kw = p[4]; g.sh = p[5]; g.sw = p[6]; g.dh = p[7];
    g.dw = p[8]; g.pt = p[9]; g.pl = p[10]; g.oh = p[11]; g.ow = p[12]; g.groups = p[13]; g.oc = p[14];
    g.batch = p[15];
    return g;
}

// Images one after another (a.n = images · c·kh·kw · oh·ow): for each image,
// y0[(c, ky, kx), (oy, ox)] = x0[c, oy*sh - pt + ky*dh, ox*sw - pl + kx*dw] (0 in the padding).
extern "C" __global__ void im2col(Args a) {
    Geometry g = geometry_of(a.i);
    i64 cols = g.oh * g.ow, per_image = g.c * g.kh * g.kw * cols;
    GRID_STRIDE(k, a.n) {
        i64 image = k / per_image, j = k % per_image;
        i64 col = j % cols, row = j / cols;
        i64 ox = col % g.ow, oy = col / g.ow;
        i64 kx = row % g.kw, ky = (row / g.kw) % g.kh, c = row / (g.kw * g.kh);
        i64 y = oy * g.sh - g.pt + ky * g.dh, x = ox * g.sw - g.pl + kx * g.dw;
        const float* x0 = a.x[0] + image * g.c * g.h * g.w;
        a.y[0][k] = (y >= 0 && y < g.h && x >= 0 && x < g.w) ? x0[(c * g.h + y) * g.w + x] : 0.0f;
    }
}

// Images one after another (a.n = images · c·h·w), the adjoint of im2col: for each image, y0[c, y, x] = the sum of
// the column entries that read x[c, y, x], gathered in (ky, kx) order.
extern "C" __global__ void col2im(Args a) {
    Geometry g = geometry_of(a.i);
    i64 cols = g.oh * g.ow, per_image = g.c * g.h * g.w;
    GRID_STRIDE(k, a.n) {
        i64 image = k / per_image, j = k % per_image;
        i64 x = j % g.w, y = (j / g.w) % g.h, c = j / (g.w * g.h);
        const float* columns = a.x[0] + image * g.c * g.kh * g.kw * cols;
        float sum = 0.0f;
        for (i64 ky = 0; ky < g.kh; ky++) {
            i64 oy = tap_output(y, g.pt, ky, g.dh, g.sh, g.oh);
            if (oy < 0) continue;
            for (i64 kx = 0; kx < g.kw; kx++) {
                i64 ox = tap_output(x, g.pl, kx, g.dw, g.sw, g.ow);
                if (ox < 0) continue;
                sum += columns[((c * g.kh + ky) * g.kw + kx) * cols + oy * g.ow + ox];
            }
        }
        a.y[0][k] = sum;
    }
}

// Whole batch, any groups: y0[b, o, oy, ox] = sum over the group's input channels and the taps of x0 * x1
// (+ x2[o] when x2 is given).
extern "C" __global__ void conv_direct(Args a) {
    Geometry g = geometry_of(a.i);
    i64 cin = g.c / g.groups, cout = g.oc / g.groups;
    GRID_STRIDE(k, a.n) {
        i64 ox = k % g.ow, oy = (k / g.ow) % g.oh, o = (k / (g.ow * g.oh)) % g.oc, b = k / (g.ow * g.oh * g.oc);
        i64 first = (o / cout) * cin;
        float sum = 0.0f;
        for (i64 ci = 0; ci < cin; ci++) {
            const float* plane = a.x[0] + ((b * g.c + first + ci) * g.h) * g.w;
            const float* taps = a.x[1] + (o * cin + ci) * g.kh * g.kw;
            for (i64 ky = 0; ky < g.kh; ky++) {
                i64 y = oy * g.sh - g.pt + ky * g.dh;
                if (y < 0 || y >= g.h) continue;
                for (i64 kx = 0; kx < g.kw; kx++) {
                    i64 x = ox * g.sw - g.pl + kx * g.dw;
                    if (x < 0 || x >= g.w) continue;
                    sum += plane[y * g.w + x] * taps[ky * g.kw + kx];
                }
            }
        }
        a.y[0][k] = sum + (a.x[2] ? a.x[2][o] : 0.0f);
    }
}

// Whole batch, any groups, the input gradient: y0[b, c, y, x] = sum over the group's output channels and the
// taps that read x[b, c, y, x] of dy (x0) * w (x1).
extern "C" __global__ void conv_direct_backward_data(Args a) {
    Geometry g = geometry_of(a.i);
    i64 cin = g.c / g.groups, cout = g.oc / g.groups;
    GRID_STRIDE(k, a.n) {
        i64 x = k % g.w, y = (k / g.w) % g.h, c = (k / (g.w * g.h)) % g.c, b = k / (g.w * g.h * g.c);
        i64 group = c / cin, ci = c % cin;
        float sum = 0.0f;
        for (i64 j = 0; j < cout; j++) {
            i64 o = group * cout + j;
            const float* grad = a.x[0] + ((b * g.oc + o) * g.oh) * g.ow;
            const float* taps = a.x[1] + (o * cin + ci) * g.kh * g.kw;
            for (i64 ky = 0; ky < g.kh; ky++) {
                i64 oy = tap_output(y, g.pt, ky, g.dh, g.sh, g.oh);
                if (oy < 0) continue;
                for (i64 kx = 0; kx < g.kw; kx++) {
                    i64 ox = tap_output(x, g.pl, kx, g.dw, g.sw, g.ow);
                    if (ox < 0) continue;
                    sum += grad[oy * g.ow + ox] * taps[ky * g.kw + kx];
                }
            }
        }
        a.y[0][k] = sum;
    }
}
