// Resampling along one axis by a sparse table: y[o, j, r] = sum over taps t of row j of w[t] * x[o, idx[t], r],
// for x viewed as [outer, in_len, inner] and y as [outer, out_len, inner]. Interpolating resizes (nearest,
// linear) and adaptive average pooling are separable, so they run as one such pass per spatial axis, and their
// gradients as the same pass with the transposed table.
//
// x0: input, x1: row offsets (out_len + 1 entries), x2: tap indices, x3: tap weights. Offsets and indices are
// whole numbers stored as floats (the host checks they stay below 2^24, where floats are exact, and that every
// index lies below in_len). i0 outer, i1 in_len, i2 out_len, i3 inner; a.n = outer * out_len * inner.
// Taps are summed in table order.

extern "C" __global__ void axis_resample(Args a) {
    i64 in_len = a.i[1], out_len = a.i[2], inner = a.i[3];
    GRID_STRIDE(k, a.n) {
        i64 r = k % inner, j = (k / inner) % out_len, o = k / (inner * out_len);
        const float* src = a.x[0] + o * in_len * inner + r;
        i64 first = (i64)a.x[1][j], last = (i64)a.x[1][j + 1];
        float sum = 0.0f;
        for (i64 t = first; t < last; t++) sum += a.x[3][t] * src[(i64)a.x[2][t] * inner];
        a.y[0][k] = sum;
    }
}
