// Copies between boxes of n-d tensors (rank <= MAX_RANK, row-major): padding, cropping, slicing and
// concatenation, forward and backward.
//
// a.i: 0 rank, then the output sizes (MAX_RANK slots), then the input sizes, then per axis the position of the
// input's origin in output coordinates (negative when the output starts inside the input).

// y0 = the output box, each element read from x0 where the input covers it, else f0.
extern "C" __global__ void box_read(Args a) {
    i64 rank = a.i[0];
    const i64* out = a.i + 1;
    const i64* in = a.i + 1 + MAX_RANK;
    const i64* origin = a.i + 1 + 2 * MAX_RANK;
    GRID_STRIDE(k, a.n) {
        i64 rest = k, offset = 0, scale = 1;
        bool inside = true;
        for (i64 d = rank - 1; d >= 0; d--) {
            i64 c = rest % out[d] - origin[d];
            rest /= out[d];
            if (c < 0 || c >= in[d]) inside = false;
            offset += c * scale;
            scale *= in[d];
        }
        a.y[0][k] = inside ? a.x[0][offset] : a.f[0];
    }
}

// Writes every element of x0 (the input box) to its place in y0; the rest of y0 is left as it is. a.n = the
// input's element count.
extern "C" __global__ void box_write(Args a) {
    i64 rank = a.i[0];
    const i64* out = a.i + 1;
    const i64* in = a.i + 1 + MAX_RANK;
    const i64* origin = a.i + 1 + 2 * MAX_RANK;
    GRID_STRIDE(k, a.n) {
        i64 rest = k, offset = 0, scale = 1;
        for (i64 d = rank - 1; d >= 0; d--) {
            i64 c = rest % in[d] + origin[d];
            rest /= in[d];
            offset += c * scale;
            scale *= out[d];
        }
        a.y[0][offset] = a.x[0][k];
    }
}

// y0 = x0 with its axes permuted: a.i[0] = rank, then the output sizes (MAX_RANK slots), then for each output
// axis the stride of the input axis it comes from. a.n = elements.
extern "C" __global__ void permute(Args a) {
    i64 rank = a.i[0];
    const i64* out = a.i + 1;
    const i64* strides = a.i + 1 + MAX_RANK;
    GRID_STRIDE(k, a.n) {
        i64 rest = k, offset = 0;
        for (i64 d = rank - 1; d >= 0; d--) {
            offset += (rest % out[d]) * strides[d];
            rest /= out[d];
        }
        a.y[0][k] = a.x[0][offset];
    }
}
