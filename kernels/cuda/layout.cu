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

// A strided slice: the small tensor s (sizes a.i[1..]) against the large tensor l (sizes a.i[1 + MAX_RANK..]);
// element o of s is element start + o * step of l on every axis (starts at a.i[1 + 2 * MAX_RANK..], positive steps
// at a.i[1 + 3 * MAX_RANK..]). a.n = elements of s.
__device__ i64 strided_offset(const i64* p, i64 k) {
    i64 rank = p[0];
    const i64* small = p + 1;
    const i64* large = p + 1 + MAX_RANK;
    const i64* start = p + 1 + 2 * MAX_RANK;
    const i64* step = p + 1 + 3 * MAX_RANK;
    i64 offset = 0, scale = 1;
    for (i64 d = rank - 1; d >= 0; d--) {
        offset += (start[d] + (k % small[d]) * step[d]) * scale;
        k /= small[d];
        scale *= large[d];
    }
    return offset;
}

// y0 (the slice) read from x0 (the large tensor).
extern "C" __global__ void strided_read(Args a) {
    GRID_STRIDE(k, a.n) { a.y[0][k] = a.x[0][strided_offset(a.i, k)]; }
}

// x0 (the slice) written into y0 (the large tensor) at its places; the rest of y0 is left as it is.
extern "C" __global__ void strided_write(Args a) {
    GRID_STRIDE(k, a.n) { a.y[0][strided_offset(a.i, k)] = a.x[0][k]; }
}
