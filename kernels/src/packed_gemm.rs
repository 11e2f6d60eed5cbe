//! GEMM with a constant left operand packed once: `C = clamp(A·B + bias [+ C])` in f32.
//!
//! Model weights never change, so each weight matrix is laid out once ([`PackedA::pack`]) in the exact order the
//! microkernel of the chosen SIMD level reads: row panels of `MR` rows, each stored `K`-major (`MR` consecutive
//! values per `k`), zero-padded to a whole panel. The right operand (an im2col tile or the input itself) is packed per
//! call into column panels of `NR` (zero-padded) in a per-thread scratch buffer that is reused across calls.
//!
//! The epilogue — per-row bias (a convolution's bias, or a folded batch-norm's shift) and a clamp (ReLU, ReLU6) — is
//! applied while the output tile is still in registers, so fused layers never write an intermediate tensor.
//!
//! Summation order depends only on the shapes (`K` is cut into fixed blocks of [`KC`]), never on threads: the same
//! inputs give bit-identical outputs on any thread count for a given SIMD level. The portable level calls
//! `matrixmultiply` and applies the epilogue after; it is the reference the SIMD levels are tested against.

use crate::gemm::{gemm_to_ptr, MatRef};
use crate::microkernel;
use crate::precision::{Precision, Stored};
use crate::simd::SimdLevel;
use std::cell::RefCell;

/// Depth of one pass of the microkernel over `K`: a `KC × NR` panel of `B` (16 KiB at NR = 32) stays in L1 while
/// every row panel of `A` streams past it from L2.
pub const KC: usize = 128;

/// A clamp applied to every output element, e.g. `[0, ∞)` for ReLU or `[0, 6]` for ReLU6.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clamp {
    pub lo: f32,
    pub hi: f32,
}

impl Clamp {
    /// No clamp.
    pub const NONE: Clamp = Clamp { lo: f32::NEG_INFINITY, hi: f32::INFINITY };
    /// `max(x, 0)`.
    pub const RELU: Clamp = Clamp { lo: 0.0, hi: f32::INFINITY };

    /// Whether the clamp changes anything.
    pub fn is_none(&self) -> bool {
        *self == Clamp::NONE
    }

    /// [`Clamp::apply`] as compare-and-select (NaN passes through: both comparisons are false), the form that
    /// vectorizes in the kernels' epilogues.
    #[inline(always)]
    pub fn apply_fast(&self, v: f32) -> f32 {
        let c = if v < self.lo { self.lo } else { v };
        if c > self.hi {
            self.hi
        } else {
            c
        }
    }

    /// `min(max(v, lo), hi)`, NaN kept as NaN (as PyTorch's clamp and the SIMD kernels do).
    pub fn apply(&self, v: f32) -> f32 {
        if v.is_nan() {
            v
        } else {
            v.max(self.lo).min(self.hi)
        }
    }
}

/// A constant `M × K` matrix (and optional per-row bias) laid out for one SIMD level's microkernel.
#[derive(Clone, Debug)]
pub struct PackedA {
    level: SimdLevel,
    m: usize,
    k: usize,
    /// Rows per panel (1 for the portable layout, which is plain row-major).
    mr: usize,
    /// The panels: f32, or 16-bit weights widened block by block as the microkernel needs them.
    data: Stored,
    /// `Some(offset)`: `data` is not packed but the caller's row-major 16-bit matrix, shared, starting `offset`
    /// values in — a model's weights read in place, never copied (see [`PackedA::from_rows`]).
    rows_at: Option<usize>,
    /// Per-row bias, zero-padded to whole panels; empty when there is none.
    bias: Vec<f32>,
    /// Per-row scale of the product (`C = clamp(s·(A·B) + bias)`), zero-padded; empty when there is none. It lets a
    /// batch-norm fold into 16-bit weights without rounding them a second time.
    scale: Vec<f32>,
}

impl PackedA {
    /// Packs `a` (any strides) and `bias` (length `a.rows`) for `level`.
    ///
    /// # Panics
    /// If `bias` has the wrong length or `a` does not fit its slice (programming errors of the caller).
    pub fn pack(level: SimdLevel, a: MatRef<'_, f32>, bias: Option<&[f32]>) -> PackedA {
        PackedA::pack_as(level, a, bias, Precision::F32)
    }

    /// [`PackedA::pack`] with the matrix held in `precision` (the bias stays f32): 16-bit weights take half the
    /// memory and are widened to f32 one `K` block at a time inside [`PackedA::gemm_rows`].
    ///
    /// # Panics
    /// As [`PackedA::pack`].
    pub fn pack_as(level: SimdLevel, a: MatRef<'_, f32>, bias: Option<&[f32]>, precision: Precision) -> PackedA {
        PackedA::pack_scaled(level, a, bias, None, precision)
    }

    /// [`PackedA::pack_as`] with a per-row `scale` of the product: `C = clamp(scale·(A·B) + bias)`, applied to
    /// each output tile while it is hot. Products with a scale cannot accumulate into `C`.
    ///
    /// # Panics
    /// As [`PackedA::pack`], or if `scale` has the wrong length.
    pub fn pack_scaled(
        level: SimdLevel,
        a: MatRef<'_, f32>,
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        precision: Precision,
    ) -> PackedA {
        let (m, k) = (a.rows, a.cols);
        let at = |i: usize, p: usize| a.data[i * a.row_stride + p * a.col_stride];
        let mr = microkernel::mr(level);
        let panels = m.div_ceil(mr);
        // One panel (or row) at a time, so 16-bit weights never exist whole in f32.
        let mut data = Stored::with_capacity(precision, panels * mr * k);
        let mut panel = Vec::with_capacity(mr * k);
        for ip in 0..if level == SimdLevel::Portable { m } else { panels } {
            panel.clear();
            if level == SimdLevel::Portable {
                panel.extend((0..k).map(|p| at(ip, p)));
            } else {
                for p in 0..k {
                    panel.extend((0..mr).map(|r| if ip * mr + r < m { at(ip * mr + r, p) } else { 0.0 }));
                }
            }
            data.extend_from_f32(&panel);
        }
        let (bias, scale) = (padded_rows(bias, m, panels * mr, "bias"), padded_rows(scale, m, panels * mr, "scale"));
        PackedA { level, m, k, mr, data, rows_at: None, bias, scale }
    }

    /// The row-major `m × k` matrix at `source[offset ..]`, used where it is — no packed copy: each K block of the
    /// row panels a call needs is gathered and widened into a per-thread buffer (the same work 16-bit packed
    /// panels need, plus a transposition of `MR × KC` values, amortized over all the columns of the call). Bias and
    /// scale as in [`PackedA::pack_scaled`].
    ///
    /// # Panics
    /// If the matrix does not fit `source`, or `bias` / `scale` have the wrong length.
    #[allow(clippy::too_many_arguments)]
    pub fn from_rows(
        level: SimdLevel,
        source: std::sync::Arc<crate::precision::HalfVec>,
        offset: usize,
        m: usize,
        k: usize,
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
    ) -> PackedA {
        assert!(
            m.checked_mul(k).and_then(|mk| mk.checked_add(offset)).is_some_and(|end| end <= source.len()),
            "packed gemm: rows outside their source"
        );
        let mr = microkernel::mr(level);
        let panels = m.div_ceil(mr);
        let (bias, scale) = (padded_rows(bias, m, panels * mr, "bias"), padded_rows(scale, m, panels * mr, "scale"));
        PackedA { level, m, k, mr, data: Stored::Half(source), rows_at: Some(offset), bias, scale }
    }

    pub fn level(&self) -> SimdLevel {
        self.level
    }

    pub fn rows(&self) -> usize {
        self.m
    }

    pub fn cols(&self) -> usize {
        self.k
    }

    /// Rows per panel: row ranges given to [`PackedA::gemm_rows`] must start on a multiple of it.
    pub fn panel_rows(&self) -> usize {
        self.mr
    }

    /// How the matrix is held.
    pub fn precision(&self) -> Precision {
        self.data.precision()
    }

    /// Bytes held (weights, unless read in place from the caller's matrix, and bias).
    pub fn bytes(&self) -> usize {
        let own = if self.rows_at.is_some() { 0 } else { self.data.bytes() };
        own + (self.bias.len() + self.scale.len()) * 4
    }

    /// `C[rows] = clamp(A[rows]·B + bias [+ C])` for output rows `r0..r1` of A, all columns of `b`. `C` is the
    /// `(r1 − r0) × b.cols` block at `c` with row stride `rsc` (column stride 1).
    ///
    /// # Safety
    /// `c` must be valid for reads and writes of that block, and no other thread may access it during the call.
    ///
    /// # Panics
    /// If `b.rows != self.cols()`, `r0` is not a multiple of [`PackedA::panel_rows`], `r1 > rows`, or `b` does not
    /// fit its slice.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_rows(
        &self,
        r0: usize,
        r1: usize,
        b: MatRef<'_, f32>,
        c: *mut f32,
        rsc: usize,
        accumulate: bool,
        clamp: Clamp,
    ) {
        assert!(b.rows == self.k, "packed gemm: inner dimensions {} and {} differ", self.k, b.rows);
        assert!(r0.is_multiple_of(self.mr) && r0 <= r1 && r1 <= self.m, "packed gemm: bad row range {r0}..{r1}");
        let n = b.cols;
        if r0 == r1 || n == 0 {
            return;
        }
        assert!(self.scale.is_empty() || !accumulate, "packed gemm: a scaled product cannot accumulate");
        if self.level == SimdLevel::Portable {
            // SAFETY: forwarded contract on `c`.
            return unsafe { self.portable(r0, r1, b, c, rsc, accumulate, clamp) };
        }
        let nr = microkernel::tile(self.level).nr;
        PACKED_B.with(|cell| {
            let mut packed_b = cell.borrow_mut();
            pack_b(b, nr, &mut packed_b);
            // SAFETY: forwarded contract on `c`; the panels were just packed from `b` (K = self.k checked above).
            unsafe { self.gemm_rows_packed(r0, r1, &packed_b, n, c, rsc, accumulate, clamp) };
        });
    }

    /// Width of the column panels that [`PackedA::gemm_rows_packed`] reads, or `None` on the portable level (which
    /// multiplies unpacked matrices).
    pub fn b_panel_width(&self) -> Option<usize> {
        (self.level != SimdLevel::Portable).then(|| microkernel::tile(self.level).nr)
    }

    /// [`PackedA::gemm_rows`] on a right operand the caller packed already: `n` columns in panels of
    /// [`PackedA::b_panel_width`], panel `j` holding `nr` values per `p` (zero-padded past column `n`), as
    /// [`pack_b`] or [`crate::im2col::im2col_panels`] lay them out. Row blocks of one product share one packing.
    ///
    /// # Safety
    /// As [`PackedA::gemm_rows`].
    ///
    /// # Panics
    /// On the portable level, if `packed_b` is shorter than the panels of `n` columns, or for a bad row range.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_rows_packed(
        &self,
        r0: usize,
        r1: usize,
        packed_b: &[f32],
        n: usize,
        c: *mut f32,
        rsc: usize,
        accumulate: bool,
        clamp: Clamp,
    ) {
        // SAFETY: forwarded contract.
        unsafe {
            self.gemm_rows_packed_residual(r0, r1, RightPanels::Packed(packed_b), n, c, rsc, accumulate, clamp, None)
        }
    }

    /// [`PackedA::gemm_rows_packed`] with a residual joining before the clamp: `C = clamp((A·B + bias) + R)`, in
    /// that order — the rounding of a separate `Add` after the product — each tile finished while it is in cache.
    ///
    /// # Safety
    /// As [`PackedA::gemm_rows`]; `residual`, when given, must be valid for reads of the same block as `c` (same
    /// row stride `rsc`) and not overlap it.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_rows_packed_residual(
        &self,
        r0: usize,
        r1: usize,
        right: RightPanels<'_>,
        n: usize,
        c: *mut f32,
        rsc: usize,
        accumulate: bool,
        clamp: Clamp,
        residual: Option<*const f32>,
    ) {
        let Some(tile) = self.tile_for(r0, r1, right, n) else { return };
        let (mr, nr) = (tile.mr, tile.nr);
        assert!(self.scale.is_empty() || !accumulate, "packed gemm: a scaled product cannot accumulate");
        {
            let mut wide = WIDE_A.with(|w| std::mem::take(&mut *w.borrow_mut()));
            let k = self.k;
            let col_panels = n.div_ceil(nr);
            let first_panel = r0 / mr;
            // Partial tiles of a scaled product run in this buffer (row stride nr), on the stack: no allocation per
            // call.
            let mut edge = [0.0f32; microkernel::MAX_TILE];
            let mut kb = 0;
            while kb < k.max(1) {
                let kc = KC.min(k - kb);
                let first = kb == 0;
                let last = kb + kc >= k;
                // 16-bit weights: this K block of every row panel in range, widened once for all column panels.
                if let (Stored::Half(h), true) = (&self.data, kc > 0) {
                    let panels = r1.div_ceil(mr) - first_panel;
                    wide.resize(panels * kc * mr, 0.0);
                    for (i, dst) in wide.chunks_exact_mut(kc * mr).enumerate() {
                        match self.rows_at {
                            None => h.widen(((first_panel + i) * k + kb) * mr, dst, self.level),
                            // Row-major: each row's run widened contiguously (the microkernel reads rows).
                            Some(offset) => {
                                for (r, row) in dst.chunks_exact_mut(kc).enumerate() {
                                    let i_row = (first_panel + i) * mr + r;
                                    if i_row < self.m {
                                        h.widen(offset + i_row * k + kb, row, self.level);
                                    } else {
                                        row.fill(0.0);
                                    }
                                }
                            }
                        }
                    }
                }
                for jp in 0..col_panels {
                    let cols = nr.min(n - jp * nr);
                    let (bp, ldb) = right.block(jp, kb, k, n, nr);
                    let b_next = right.next_in_place(jp, kb, k, n, nr);
                    // Tiles without a scale: every row panel in one microkernel call, the last one writing only its
                    // rows below r1, a partial column panel only its columns, the residual (if any) added in the
                    // kernel's epilogue.
                    let scaled = !self.scale.is_empty();
                    let fast_end = if scaled { r0 / mr } else { r1.div_ceil(mr) };
                    if fast_end > r0 / mr {
                        let ip = r0 / mr;
                        let (ap, a_step) = match &self.data {
                            Stored::F32(v) => (&v[(ip * k + kb) * mr..], k * mr),
                            Stored::Half(_) => (&wide[(ip - first_panel) * kc * mr..], kc * mr),
                        };
                        let bias = (first && !self.bias.is_empty()).then(|| &self.bias[ip * mr..fast_end * mr]);
                        let epilogue = last.then_some(clamp);
                        let res = residual.filter(|_| last).map(|r| r.wrapping_add((ip * mr - r0) * rsc + jp * nr));
                        // SAFETY: panels ip..fast_end lie inside the caller's block (rows below r1, the kernel
                        // writing columns jp·nr .. jp·nr + cols ≤ n); `ap` holds kc·mr values for each of them, a_step apart (whole panels
                        // are packed or widened); `bp` holds nr values at each of kc rows ldb apart
                        // (`RightPanels::block`); `res` points into the residual at the same offset as C (its
                        // block has the same layout, per the contract); the level is supported (PackedA was built
                        // for it).
                        unsafe {
                            tile.run_panels(
                                fast_end - ip,
                                r1 - (fast_end - 1) * mr,
                                cols,
                                kc,
                                ap.as_ptr(),
                                a_step,
                                self.rows_at.map(|_| kc),
                                bp,
                                ldb,
                                b_next,
                                c.add(jp * nr),
                                rsc,
                                accumulate || !first,
                                bias,
                                res,
                                epilogue,
                            )
                        };
                    }
                    // Scaled products only: tile by tile, each finished by `finish_tile` (scale, then bias and
                    // clamp) before the residual.
                    for ip in fast_end.max(r0 / mr)..r1.div_ceil(mr) {
                        debug_assert!(scaled, "only scaled products take the per-tile path");
                        let rows = mr.min(r1 - ip * mr);
                        // In-place 16-bit rows were widened row-major (row stride kc).
                        let lda = self.rows_at.map(|_| kc);
                        let ap = match &self.data {
                            Stored::F32(v) => &v[(ip * k + kb) * mr..],
                            Stored::Half(_) => &wide[(ip - first_panel) * kc * mr..],
                        };
                        // The bias and clamp wait for the scaled sum (see `finish_tile`), the clamp for the residual
                        // too.
                        let inner_clamp = if residual.is_some() { Clamp::NONE } else { clamp };
                        let load = accumulate || !first;
                        let offset = (ip * mr - r0) * rsc + jp * nr;
                        // SAFETY: the tile lies inside the caller's block (rows ≤ r1 − r0, columns < n).
                        let out = unsafe { c.add(offset) };
                        if let (true, Some(res)) = (last, residual) {
                            // The residual tile is read right after this block of products: fetched meanwhile (its
                            // rows lie a plane apart, which the hardware prefetcher does not follow).
                            for r in 0..rows {
                                for line in (0..cols).step_by(16) {
                                    prefetch(res.wrapping_add(offset + r * rsc + line));
                                }
                                prefetch(res.wrapping_add(offset + r * rsc + cols - 1));
                            }
                        }
                        let call = |dst: *mut f32, stride: usize| {
                            // SAFETY: `ap` holds kc·mr values from this offset (whole panels are packed,
                            // zero-padded) and `bp` nr values at each of kc rows ldb apart (`RightPanels::block`);
                            // `dst` is an mr × nr block with row stride `stride` (a whole tile inside C, or the edge
                            // buffer). The level is supported: PackedA was built for it, which
                            // microkernel::tile checked.
                            unsafe {
                                tile.run_panels(
                                    1,
                                    mr,
                                    nr,
                                    kc,
                                    ap.as_ptr(),
                                    0,
                                    lda,
                                    bp,
                                    ldb,
                                    None,
                                    dst,
                                    stride,
                                    load,
                                    None,
                                    None,
                                    None,
                                )
                            };
                            if last {
                                // SAFETY: as above, `dst` is an mr × nr block with row stride `stride`.
                                unsafe { self.finish_tile(ip * mr, dst, stride, nr, inner_clamp) };
                            }
                            if let (true, Some(res)) = (last, residual) {
                                for r in 0..rows {
                                    // SAFETY: row r, columns < cols of the tile, in `dst` (a tile of row stride
                                    // `stride`) and in the residual (the caller's block, row stride rsc).
                                    let (y, add) = unsafe {
                                        (
                                            std::slice::from_raw_parts_mut(dst.add(r * stride), cols),
                                            std::slice::from_raw_parts(res.add(offset + r * rsc), cols),
                                        )
                                    };
                                    y.iter_mut().zip(add).for_each(|(y, &a)| *y = clamp.apply_fast(*y + a));
                                }
                            }
                        };
                        // A scaled tile is finished over all mr rows and nr columns (`finish_tile`): in C only when
                        // it has them.
                        if cols == nr && rows == mr {
                            call(out, rsc);
                        } else {
                            // Partial tile: run the same kernel on a padded copy, then write back the valid part.
                            for r in 0..rows {
                                for j in 0..cols {
                                    // SAFETY: (r, j) is inside the caller's block.
                                    edge[r * nr + j] = if load { unsafe { *out.add(r * rsc + j) } } else { 0.0 };
                                }
                            }
                            call(edge.as_mut_ptr(), nr);
                            for r in 0..rows {
                                for j in 0..cols {
                                    // SAFETY: as above.
                                    unsafe { *out.add(r * rsc + j) = edge[r * nr + j] };
                                }
                            }
                        }
                    }
                }
                // At least one pass even when K = 0 (the bias and clamp still apply), then past the end.
                kb += kc.max(1);
            }
            WIDE_A.with(|w| *w.borrow_mut() = wide);
        }
    }

    /// `y = clamp(scale·y + bias)` over the `mr × nr` tile at `dst` (row stride `stride`) of rows `row0..`.
    ///
    /// # Safety
    /// `dst` must be valid for reads and writes of that tile, owned by this thread.
    unsafe fn finish_tile(&self, row0: usize, dst: *mut f32, stride: usize, nr: usize, clamp: Clamp) {
        for r in 0..self.mr {
            let (s, b) = (self.scale[row0 + r], self.bias.get(row0 + r).copied().unwrap_or(0.0));
            // SAFETY: row r of the tile, per the contract.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.add(r * stride), nr) };
            row.iter_mut().for_each(|v| *v = clamp.apply(*v * s + b));
        }
    }

    /// The reference path: matrixmultiply, then bias and clamp.
    #[allow(clippy::too_many_arguments)]
    unsafe fn portable(
        &self,
        r0: usize,
        r1: usize,
        b: MatRef<'_, f32>,
        c: *mut f32,
        rsc: usize,
        accumulate: bool,
        clamp: Clamp,
    ) {
        let (k, n, rows) = (self.k, b.cols, r1 - r0);
        let widened;
        let a = match &self.data {
            Stored::F32(v) => MatRef::row_major(&v[r0 * k..r1 * k], rows, k),
            Stored::Half(h) => {
                // The portable layout is row-major, packed or not.
                let mut w = vec![0.0; rows * k];
                h.widen(self.rows_at.unwrap_or(0) + r0 * k, &mut w, self.level);
                widened = w;
                MatRef::row_major(&widened, rows, k)
            }
        };
        // SAFETY: for r < rows this is row r of the caller's block, which the caller gives us exclusively; each
        // slice lives only for one statement below, so no two coexist and none spans the GEMM call.
        let row = |r: usize| unsafe { std::slice::from_raw_parts_mut(c.add(r * rsc), n) };
        let scaled = !self.scale.is_empty();
        for r in 0..rows {
            let bias = self.bias.get(r0 + r).copied().filter(|_| !scaled);
            if !accumulate {
                row(r).fill(bias.unwrap_or(0.0));
            } else if let Some(bias) = bias {
                row(r).iter_mut().for_each(|v| *v += bias);
            }
        }
        // SAFETY: the caller's contract on `c`; operands are checked by gemm_to_ptr.
        unsafe { gemm_to_ptr(1.0, a, b, 1.0, c, rsc, 1) };
        if scaled {
            for r in 0..rows {
                let (s, b) = (self.scale[r0 + r], self.bias.get(r0 + r).copied().unwrap_or(0.0));
                row(r).iter_mut().for_each(|v| *v = clamp.apply(*v * s + b));
            }
        } else if !clamp.is_none() {
            (0..rows).for_each(|r| row(r).iter_mut().for_each(|v| *v = clamp.apply(*v)));
        }
    }

    /// The checks both orders of a product start with — a row range of whole panels, a right operand of `k × n` —
    /// and the tile, or `None` when the block is empty.
    ///
    /// # Panics
    /// On a bad row range or a right operand too short.
    fn tile_for(&self, r0: usize, r1: usize, right: RightPanels<'_>, n: usize) -> Option<microkernel::Tile> {
        assert!(r0.is_multiple_of(self.mr) && r0 <= r1 && r1 <= self.m, "packed gemm: bad row range {r0}..{r1}");
        let tile = microkernel::tile(self.level);
        debug_assert_eq!(tile.mr, self.mr);
        right.check(self.k, n, tile.nr);
        (r0 < r1 && n > 0).then_some(tile)
    }

    /// [`PackedA::gemm_rows_packed_residual`] in another order, for a product whose stores decide its time (a
    /// large output over a small `K`, see `conv_packed`): row panel by row panel, each along every column panel, so
    /// that each row of C is written in one run from left to right, which the hardware prefetcher follows — rather
    /// than column panel by column panel down every row panel, which writes a few lines of every row in turn. The
    /// tiles are the same, so are the sums: only their order differs. Products of more than one K block, scaled
    /// or 16-bit ones take the usual order.
    ///
    /// # Safety
    /// As [`PackedA::gemm_rows_packed_residual`].
    ///
    /// # Panics
    /// As [`PackedA::gemm_rows_packed_residual`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_rows_by_row_panels(
        &self,
        r0: usize,
        r1: usize,
        right: RightPanels<'_>,
        n: usize,
        c: *mut f32,
        rsc: usize,
        accumulate: bool,
        clamp: Clamp,
        residual: Option<*const f32>,
    ) {
        let a = match &self.data {
            Stored::F32(a) if (1..=KC).contains(&self.k) && self.scale.is_empty() && self.rows_at.is_none() => a,
            _ => {
                // SAFETY: forwarded contract.
                return unsafe {
                    self.gemm_rows_packed_residual(r0, r1, right, n, c, rsc, accumulate, clamp, residual)
                };
            }
        };
        let Some(tile) = self.tile_for(r0, r1, right, n) else { return };
        let (mr, nr, k) = (tile.mr, tile.nr, self.k);
        for ip in r0 / mr..r1.div_ceil(mr) {
            let rows = mr.min(r1 - ip * mr);
            let bias = (!self.bias.is_empty()).then(|| &self.bias[ip * mr..(ip + 1) * mr]);
            for jp in 0..n.div_ceil(nr) {
                let (bp, ldb) = right.block(jp, 0, k, n, nr);
                let offset = (ip * mr - r0) * rsc + jp * nr;
                // No `b_next`: along a row panel the next column panel's rows are read right away, and the first
                // row panel's reads of them are the ones the prefetcher follows (rows of K ≤ one block).
                // SAFETY: row panel ip lies inside the caller's block (rows below r1) and the tile writes columns
                // jp·nr .. jp·nr + cols ≤ n of it; `a` holds k·mr values for the panel (whole panels are packed);
                // `bp` holds nr values at each of k rows ldb apart (`RightPanels::block`); the residual has C's
                // layout (the contract); the level is supported (PackedA was built for it).
                unsafe {
                    tile.run_panels(
                        1,
                        rows,
                        nr.min(n - jp * nr),
                        k,
                        a[ip * k * mr..].as_ptr(),
                        k * mr,
                        None,
                        bp,
                        ldb,
                        None,
                        c.add(offset),
                        rsc,
                        accumulate,
                        bias,
                        residual.map(|r| r.wrapping_add(offset)),
                        Some(clamp),
                    )
                };
            }
        }
    }

    /// Safe wrapper: `c` (row-major `rows × b.cols`) `= clamp(A·B + bias [+ c])`.
    pub fn gemm(&self, b: MatRef<'_, f32>, c: &mut [f32], accumulate: bool, clamp: Clamp) {
        assert_eq!(c.len(), self.m * b.cols, "packed gemm: output length");
        // SAFETY: `c` is exclusively borrowed and has exactly rows × cols elements.
        unsafe { self.gemm_rows(0, self.m, b, c.as_mut_ptr(), b.cols, accumulate, clamp) }
    }
}

/// The right operand of [`PackedA::gemm_rows_packed_residual`], as the microkernels read it.
#[derive(Clone, Copy, Debug)]
pub enum RightPanels<'a> {
    /// Column panels of `nr` as [`pack_b`] or [`crate::im2col::im2col_panels`] lay them out: panel `j` holds `nr`
    /// values per row `p` (zero-padded past the last column).
    Packed(&'a [f32]),
    /// A row-major `K × N` matrix read where it is (row `p` at `data[p·row_stride ..]`): every whole panel straight
    /// from its rows — a 1×1 convolution's input needs no packing — and only a last, partial panel packed into
    /// `tail` (`K × nr`, zero-padded).
    InPlace { data: &'a [f32], row_stride: usize, tail: &'a [f32] },
}

impl RightPanels<'_> {
    /// Checks that the operand holds `k × n` values for panels of `nr`.
    ///
    /// # Panics
    /// If it is too short.
    fn check(&self, k: usize, n: usize, nr: usize) {
        let ok = match *self {
            RightPanels::Packed(v) => n.div_ceil(nr).checked_mul(k * nr).is_some_and(|need| v.len() >= need),
            RightPanels::InPlace { data, row_stride, tail } => {
                let whole = n / nr * nr;
                let rows_ok = k == 0
                    || whole == 0
                    || (k - 1)
                        .checked_mul(row_stride)
                        .and_then(|e| e.checked_add(whole))
                        .is_some_and(|e| e <= data.len());
                rows_ok && (n.is_multiple_of(nr) || tail.len() >= k * nr)
            }
        };
        assert!(ok, "packed gemm: right operand too short");
    }

    /// Where rows `kb..` of column panel `jp` start, and their stride. Valid for `nr` reads per row, `k − kb` rows
    /// (after [`RightPanels::check`]).
    fn block(&self, jp: usize, kb: usize, k: usize, n: usize, nr: usize) -> (*const f32, usize) {
        match *self {
            RightPanels::Packed(v) => (v[(jp * k + kb) * nr..].as_ptr(), nr),
            RightPanels::InPlace { data, row_stride, .. } if (jp + 1) * nr <= n => {
                (data[kb * row_stride + jp * nr..].as_ptr(), row_stride)
            }
            RightPanels::InPlace { tail, .. } => (tail[kb * nr..].as_ptr(), nr),
        }
    }

    /// Where rows `kb..` of column panel `jp + 1` start when that panel is read in place (for a prefetch: the
    /// hardware prefetcher does not follow rows a plane apart); `None` for packed panels, which it streams.
    fn next_in_place(&self, jp: usize, kb: usize, k: usize, n: usize, nr: usize) -> Option<*const f32> {
        match *self {
            RightPanels::InPlace { .. } if (jp + 2) * nr <= n => Some(self.block(jp + 1, kb, k, n, nr).0),
            _ => None,
        }
    }
}

/// Asks the cache for the line holding `p` (a hint: never faults, whatever the address).
#[inline(always)]
pub(crate) fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is part of x86-64's baseline (SSE) and does not access memory architecturally: any
    // address is allowed.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A per-row vector (`m` values) zero-padded to `len` (whole panels); empty when there is none.
///
/// # Panics
/// If it does not have `m` values.
fn padded_rows(v: Option<&[f32]>, m: usize, len: usize, what: &str) -> Vec<f32> {
    v.map_or(Vec::new(), |b| {
        assert_eq!(b.len(), m, "packed gemm: {what} length");
        let mut v = b.to_vec();
        v.resize(len, 0.0);
        v
    })
}

thread_local! {
    /// Packed right-hand panels, reused by every call on this thread.
    static PACKED_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// One K block of 16-bit row panels widened to f32, reused by every call on this thread.
    static WIDE_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Packs `b` (`K × N`) into column panels of `nr`: panel `j` holds `b[p][j·nr .. j·nr + nr]` for each `p` in turn,
/// zero-padded past the last column. Every value of the packed panels is written once (no zero fill first).
pub(crate) fn pack_b(b: MatRef<'_, f32>, nr: usize, out: &mut Vec<f32>) {
    let len = b.cols.div_ceil(nr) * b.rows * nr;
    if out.len() < len {
        out.resize(len, 0.0);
    }
    pack_b_into(b, nr, &mut out[..len]);
}

/// [`pack_b`] into a slice of exactly the panels' length.
///
/// # Panics
/// If `out` does not have that length or `b` does not fit its slice.
pub(crate) fn pack_b_into(b: MatRef<'_, f32>, nr: usize, out: &mut [f32]) {
    let (k, n) = (b.rows, b.cols);
    let panels = n.div_ceil(nr);
    assert_eq!(out.len(), panels * k * nr, "pack_b: output length");
    assert!(b.rows == 0 || b.cols == 0 || (b.rows - 1) * b.row_stride + (b.cols - 1) * b.col_stride < b.data.len());
    for jp in 0..panels {
        let (j0, cols) = (jp * nr, nr.min(n - jp * nr));
        let panel = &mut out[jp * k * nr..(jp + 1) * k * nr];
        for (p, dst) in panel.chunks_exact_mut(nr).enumerate() {
            let row = p * b.row_stride + j0 * b.col_stride;
            if b.col_stride == 1 {
                copy_short(&mut dst[..cols], &b.data[row..row + cols]);
            } else {
                for (j, d) in dst[..cols].iter_mut().enumerate() {
                    *d = b.data[row + j * b.col_stride];
                }
            }
            dst[cols..].fill(0.0);
        }
    }
}

/// `dst.copy_from_slice(src)` for the short runs of packing (a panel row: 7–32 values), in fixed-size blocks that
/// compile to vector moves instead of a call to `memcpy` per run. The remainder too: LLVM turns an element loop
/// into a `memcpy` call, which on the 7-value rows of the pixel tile's panels was 40 % of their packing.
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy_short: lengths differ");
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (d, s) in (&mut d).zip(&mut s) {
        copy_block::<16>(d, s);
    }
    let (d, s) = copy_head::<8>(d.into_remainder(), s.remainder());
    let (d, s) = copy_head::<4>(d, s);
    let (d, s) = copy_head::<2>(d, s);
    copy_head::<1>(d, s);
}

/// Copies the first `N` values of `src` into `dst` when both hold at least `N` (a fixed-size move) and returns what
/// is left of each, else copies nothing and returns both whole.
#[inline(always)]
fn copy_head<'a, 'b, const N: usize>(dst: &'a mut [f32], src: &'b [f32]) -> (&'a mut [f32], &'b [f32]) {
    if dst.len() < N || src.len() < N {
        return (dst, src);
    }
    let ((head, rest), (from, left)) = (dst.split_at_mut(N), src.split_at(N));
    copy_block::<N>(head, from);
    (rest, left)
}

/// `dst = src` for exactly `N` values.
#[inline(always)]
fn copy_block<const N: usize>(dst: &mut [f32], src: &[f32]) {
    let d: &mut [f32; N] = dst.try_into().expect("N values");
    *d = *<&[f32; N]>::try_from(src).expect("N values");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::supported_levels;

    #[test]
    fn copy_short_copies_every_length_exactly() {
        for len in 0..=40 {
            let src: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
            // One value more on each side of the destination: it must stay untouched.
            let mut dst = vec![-1.0f32; len + 2];
            copy_short(&mut dst[1..=len], &src);
            assert_eq!(&dst[1..=len], &src[..], "length {len}");
            assert_eq!((dst[0], dst[len + 1]), (-1.0, -1.0), "length {len}");
        }
    }

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn reference(a: &[f32], b: &[f32], bias: &[f32], c0: &[f32], m: usize, k: usize, n: usize, acc: bool) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
                c[i * n + j] = dot + bias[i] as f64 + if acc { c0[i * n + j] as f64 } else { 0.0 };
            }
        }
        c
    }

    /// Every level against an f64 reference, on odd shapes: partial panels in both directions, K not a multiple of
    /// KC, K smaller than one block, accumulate and bias, clamp.
    #[test]
    fn every_level_matches_reference_on_odd_shapes() {
        let shapes = [(1, 1, 1), (5, 3, 7), (13, 129, 33), (24, 300, 64), (37, 257, 49), (64, 27, 200), (7, 1, 17)];
        for level in supported_levels() {
            for (case, &(m, k, n)) in shapes.iter().enumerate() {
                for &(acc, clamp) in &[(false, Clamp::NONE), (true, Clamp::NONE), (false, Clamp { lo: -0.5, hi: 0.7 })]
                {
                    let a = data(m * k, case as u64 + 1);
                    let b = data(k * n, case as u64 + 100);
                    let bias = data(m, case as u64 + 200);
                    let c0 = data(m * n, case as u64 + 300);
                    let packed = PackedA::pack(level, MatRef::row_major(&a, m, k), Some(&bias));
                    let mut c = c0.clone();
                    packed.gemm(MatRef::row_major(&b, k, n), &mut c, acc, clamp);
                    let want = reference(&a, &b, &bias, &c0, m, k, n, acc);
                    for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        let w = clamp.apply(w as f32);
                        let tol = 1e-5 * (k as f32).sqrt() * (1.0 + w.abs());
                        assert!((got - w).abs() <= tol, "{level} {m}x{k}x{n} acc={acc} at {i}: {got} vs {w}");
                    }
                }
            }
        }
    }

    /// A product whose height is not a multiple of the panel's writes its rows and nothing below them: the last
    /// panel's extra rows (zeros in A) are neither stored nor loaded, on every path (plain, accumulating, with a
    /// residual, scaled), and the rows it writes match the reference.
    #[test]
    fn short_last_panels_write_only_their_rows() {
        let (k, n) = (19, 70);
        for level in supported_levels().into_iter().filter(|&l| l != SimdLevel::Portable) {
            let nr = PackedA::pack(level, MatRef::row_major(&[0.0], 1, 1), None).b_panel_width().expect("SIMD");
            for m in [1, 5, 8, 13, 37] {
                let a = data(m * k, m as u64);
                let b = data(k * n, 7);
                let bias = data(m, 8);
                let scale: Vec<f32> = data(m, 9).iter().map(|v| 1.0 + v.abs()).collect();
                let residual = data(m * n, 10);
                let mut panels = Vec::new();
                pack_b(MatRef::row_major(&b, k, n), nr, &mut panels);
                let plain = PackedA::pack(level, MatRef::row_major(&a, m, k), Some(&bias));
                let scaled =
                    PackedA::pack_scaled(level, MatRef::row_major(&a, m, k), Some(&bias), Some(&scale), Precision::F32);
                for (what, packed, accumulate, res) in [
                    ("plain", &plain, false, None),
                    ("accumulate", &plain, true, None),
                    ("residual", &plain, false, Some(residual.as_ptr())),
                    ("scaled", &scaled, false, None),
                ] {
                    // C is the first m rows of a buffer whose 16 rows below are NaN guards.
                    let c0 = data(m * n, 11);
                    let mut c = c0.clone();
                    c.resize((m + 16) * n, f32::NAN);
                    // SAFETY: rows 0..m of `c` (row stride n), exclusively borrowed; the residual has the same
                    // shape and is a separate buffer.
                    unsafe {
                        packed.gemm_rows_packed_residual(
                            0,
                            m,
                            RightPanels::Packed(&panels),
                            n,
                            c.as_mut_ptr(),
                            n,
                            accumulate,
                            Clamp::NONE,
                            res,
                        )
                    };
                    assert!(c[m * n..].iter().all(|v| v.is_nan()), "{level} {what} m={m}: wrote below the product");
                    let want = reference(&a, &b, &bias, &c0, m, k, n, accumulate);
                    for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        let (r, j) = (i / n, i % n);
                        let w = match what {
                            "residual" => w + residual[i] as f64,
                            // scale·(A·B) + bias: the reference added the bias before the scale.
                            "scaled" => (w - bias[r] as f64) * scale[r] as f64 + bias[r] as f64,
                            _ => w,
                        } as f32;
                        let tol = 1e-5 * (k as f32).sqrt() * (1.0 + w.abs()) * 4.0;
                        assert!((got - w).abs() <= tol, "{level} {what} m={m} at ({r}, {j}): {got} vs {w}");
                    }
                }
            }
        }
    }

    /// A last panel of a third or two thirds of the tile's rows, and a last column panel one vector wide, run on
    /// smaller tiles (`microkernel`): each output must keep the bits the whole tile gives it. The product of the
    /// first `m` rows and `n` columns is compared with the same block of a product a whole number of tiles tall and
    /// wide, over two K blocks (so the accumulators also start from C) with a bias and a clamp.
    #[test]
    fn short_and_narrow_tiles_give_the_bits_of_whole_ones() {
        let k = KC + 22;
        for level in supported_levels().into_iter().filter(|&l| l != SimdLevel::Portable) {
            let tile = microkernel::tile(level);
            // What the pixel-rows choice weighs: the cells these tiles compute.
            let (third, half) = (tile.mr / 3, tile.nr / 2);
            assert_eq!(tile.cells(tile.mr + 1, tile.nr + 1), (tile.mr + third) * (tile.nr + half));
            assert_eq!(tile.cells(2 * tile.mr - 1, 2 * tile.nr), 2 * tile.mr * 2 * tile.nr);
            assert_eq!(tile.cells(third + 1, half + 1), 2 * third * tile.nr);
            let (big_m, big_n) = (2 * tile.mr, 2 * tile.nr);
            let a = data(big_m * k, 1);
            let b = data(k * big_n, 2);
            let bias = data(big_m, 3);
            let clamp = Clamp { lo: -0.5, hi: 0.7 };
            let whole = PackedA::pack(level, MatRef::row_major(&a, big_m, k), Some(&bias));
            let mut want = vec![0.0; big_m * big_n];
            whole.gemm(MatRef::row_major(&b, k, big_n), &mut want, false, clamp);
            for m in [1, tile.mr / 3, tile.mr / 3 + 1, 2 * (tile.mr / 3), tile.mr + 1, tile.mr + tile.mr / 3] {
                for n in [1, tile.nr / 2, tile.nr / 2 + 1, tile.nr + 3, tile.nr + tile.nr / 2] {
                    let packed = PackedA::pack(level, MatRef::row_major(&a[..m * k], m, k), Some(&bias[..m]));
                    let cols: Vec<f32> = (0..k).flat_map(|p| b[p * big_n..p * big_n + n].to_vec()).collect();
                    let mut got = vec![0.0; m * n];
                    packed.gemm(MatRef::row_major(&cols, k, n), &mut got, false, clamp);
                    for (i, &g) in got.iter().enumerate() {
                        let w = want[(i / n) * big_n + i % n];
                        assert_eq!(g.to_bits(), w.to_bits(), "{level} {m}×{n} at ({}, {})", i / n, i % n);
                    }
                }
            }
        }
    }

    /// Row panel by row panel gives the bits of the usual order: bias, clamp, accumulation, a residual, short last
    /// row and column panels, a row range, packed and in-place right operands, and K from 16 to one block (and past
    /// it, where it falls back).
    #[test]
    fn the_row_panel_order_gives_the_bits_of_the_column_panel_order() {
        for level in supported_levels().into_iter().filter(|&l| l != SimdLevel::Portable) {
            let tile = microkernel::tile(level);
            for k in [16, 64, KC, KC + 5] {
                let (m, n) = (3 * tile.mr + 5, 3 * tile.nr + 7);
                let (a, b, bias) = (data(m * k, 1), data(k * n, 2), data(m, 3));
                let (start, residual) = (data(m * n, 4), data(m * n, 5));
                let clamp = Clamp { lo: -0.5, hi: 0.7 };
                let packed = PackedA::pack(level, MatRef::row_major(&a, m, k), Some(&bias));
                let mut panels = Vec::new();
                pack_b(MatRef::row_major(&b, k, n), tile.nr, &mut panels);
                // Read in place (as a 1×1 layer's input): whole panels from the rows, the last, partial one packed.
                let whole = n / tile.nr * tile.nr;
                let mut tail = Vec::new();
                let rest = MatRef { data: &b[whole..], rows: k, cols: n - whole, row_stride: n, col_stride: 1 };
                pack_b(rest, tile.nr, &mut tail);
                let in_place = RightPanels::InPlace { data: &b, row_stride: n, tail: &tail };
                let cases = [(0, false, None), (tile.mr, true, Some(residual.as_ptr()))];
                for ((r0, accumulate, res), right) in
                    cases.into_iter().flat_map(|c| [(c, RightPanels::Packed(&panels)), (c, in_place)])
                {
                    let (mut want, mut got) = (start.clone(), start.clone());
                    let res = res.map(|r: *const f32| r.wrapping_add(r0 * n));
                    // SAFETY: rows r0..m of m × n buffers, exclusively borrowed; the residual has the same layout.
                    unsafe {
                        let (w, g) = (want[r0 * n..].as_mut_ptr(), got[r0 * n..].as_mut_ptr());
                        packed.gemm_rows_packed_residual(r0, m, right, n, w, n, accumulate, clamp, res);
                        packed.gemm_rows_by_row_panels(r0, m, right, n, g, n, accumulate, clamp, res);
                    }
                    let same = want.iter().zip(&got).all(|(w, g)| w.to_bits() == g.to_bits());
                    assert!(same, "{level} k {k} from row {r0}");
                    assert!(got[r0 * n..].iter().zip(&start[r0 * n..]).any(|(g, s)| g != s), "{level}: it wrote");
                }
            }
        }
    }

    #[test]
    fn row_ranges_partition_the_product_exactly() {
        // Computing rows in panel-aligned blocks gives bit-identical results to one call: tasks may split rows.
        let (m, k, n) = (50, 70, 45);
        let a = data(m * k, 1);
        let b = data(k * n, 2);
        for level in supported_levels() {
            let packed = PackedA::pack(level, MatRef::row_major(&a, m, k), None);
            let mut whole = vec![0.0; m * n];
            packed.gemm(MatRef::row_major(&b, k, n), &mut whole, false, Clamp::RELU);
            let mut parts = vec![0.0; m * n];
            let step = packed.panel_rows() * 2;
            for r0 in (0..m).step_by(step) {
                let r1 = (r0 + step).min(m);
                // SAFETY: rows r0..r1 of `parts`, exclusively borrowed.
                unsafe {
                    packed.gemm_rows(
                        r0,
                        r1,
                        MatRef::row_major(&b, k, n),
                        parts.as_mut_ptr().add(r0 * n),
                        n,
                        false,
                        Clamp::RELU,
                    )
                };
            }
            assert_eq!(whole, parts, "{level}");
            assert!(whole.iter().all(|&v| v >= 0.0));
        }
    }

    #[test]
    fn strided_right_operand_is_read_through_its_strides() {
        let (m, k, n) = (9, 11, 20);
        let a = data(m * k, 5);
        let big = data(k * 32, 6);
        let b_dense: Vec<f32> = (0..k).flat_map(|p| big[p * 32..p * 32 + n].to_vec()).collect();
        for level in supported_levels() {
            let packed = PackedA::pack(level, MatRef::row_major(&a, m, k), None);
            let mut c1 = vec![0.0; m * n];
            let mut c2 = vec![0.0; m * n];
            packed.gemm(
                MatRef { data: &big, rows: k, cols: n, row_stride: 32, col_stride: 1 },
                &mut c1,
                false,
                Clamp::NONE,
            );
            packed.gemm(MatRef::row_major(&b_dense, k, n), &mut c2, false, Clamp::NONE);
            assert_eq!(c1, c2, "{level}");
        }
    }

    /// 16-bit panels are widened exactly, so a product with them is bit-identical to the f32 product with the
    /// weights rounded beforehand — on every level, with partial panels, several K blocks and row ranges.
    #[test]
    fn sixteen_bit_panels_equal_f32_panels_of_the_rounded_weights() {
        use crate::precision::{HalfVec, Precision};
        let (m, k, n) = (29, 300, 45);
        let a = data(m * k, 11);
        let b = data(k * n, 12);
        let bias = data(m, 13);
        for precision in [Precision::F16, Precision::Bf16] {
            let rounded = HalfVec::from_f32(precision, &a).unwrap().to_f32_vec();
            for level in supported_levels() {
                let half = PackedA::pack_as(level, MatRef::row_major(&a, m, k), Some(&bias), precision);
                let full = PackedA::pack(level, MatRef::row_major(&rounded, m, k), Some(&bias));
                assert_eq!(half.precision(), precision);
                assert!(
                    half.bytes() < full.bytes() * 6 / 10,
                    "{precision} {level}: {} vs {}",
                    half.bytes(),
                    full.bytes()
                );
                let mut want = vec![0.0; m * n];
                full.gemm(MatRef::row_major(&b, k, n), &mut want, false, Clamp::RELU);
                let mut got = vec![0.0; m * n];
                half.gemm(MatRef::row_major(&b, k, n), &mut got, false, Clamp::RELU);
                assert_eq!(got, want, "{precision} {level}");
                // A row range starting past the first panel widens the right panels.
                let r0 = half.panel_rows() * 2;
                let mut part = vec![0.0; (m - r0) * n];
                // SAFETY: `part` holds rows r0..m, exclusively borrowed.
                unsafe { half.gemm_rows(r0, m, MatRef::row_major(&b, k, n), part.as_mut_ptr(), n, false, Clamp::RELU) };
                assert_eq!(part, want[r0 * n..].to_vec(), "{precision} {level} rows {r0}..");
                // The same matrix read in place (row-major, at an offset inside a larger tensor): the same bits, and
                // no weight bytes of its own.
                let mut source = HalfVec::from_f32(precision, &[0.5; 7]).unwrap();
                source.extend_from_f32(&a);
                let shared = std::sync::Arc::new(source);
                let in_place = PackedA::from_rows(level, shared, 7, m, k, Some(&bias), None);
                assert_eq!(in_place.bytes(), in_place.panel_rows() * m.div_ceil(in_place.panel_rows()) * 4);
                let mut got = vec![0.0; m * n];
                in_place.gemm(MatRef::row_major(&b, k, n), &mut got, false, Clamp::RELU);
                assert_eq!(got, want, "{precision} {level} in place");
                let mut part = vec![0.0; (m - r0) * n];
                // SAFETY: as above.
                unsafe {
                    in_place.gemm_rows(r0, m, MatRef::row_major(&b, k, n), part.as_mut_ptr(), n, false, Clamp::RELU)
                };
                assert_eq!(part, want[r0 * n..].to_vec(), "{precision} {level} in place, rows {r0}..");
            }
        }
    }

    #[test]
    fn an_empty_inner_dimension_gives_the_bias_in_every_format() {
        use crate::precision::{HalfVec, Precision};
        let bias = [0.5f32, -1.0, 2.0];
        for level in supported_levels() {
            for precision in [Precision::F32, Precision::F16, Precision::Bf16] {
                let packed = PackedA::pack_as(level, MatRef::row_major(&[], 3, 0), Some(&bias), precision);
                let mut c = vec![f32::NAN; 6];
                packed.gemm(MatRef::row_major(&[], 0, 2), &mut c, false, Clamp::NONE);
                assert_eq!(c, vec![0.5, 0.5, -1.0, -1.0, 2.0, 2.0], "{precision} {level}");
            }
            let source = std::sync::Arc::new(HalfVec::from_f32(Precision::F16, &[]).unwrap());
            let in_place = PackedA::from_rows(level, source, 0, 3, 0, Some(&bias), None);
            let mut c = vec![f32::NAN; 6];
            in_place.gemm(MatRef::row_major(&[], 0, 2), &mut c, false, Clamp::NONE);
            assert_eq!(c, vec![0.5, 0.5, -1.0, -1.0, 2.0, 2.0], "in place {level}");
        }
    }

    #[test]
    fn nan_survives_the_clamp() {
        let a = [f32::NAN, 1.0];
        let b = [1.0, 1.0];
        for level in supported_levels() {
            let packed = PackedA::pack(level, MatRef::row_major(&a, 2, 1), None);
            let mut c = [0.0; 4];
            packed.gemm(MatRef::row_major(&b, 1, 2), &mut c, false, Clamp::RELU);
            assert!(c[0].is_nan() && c[1].is_nan(), "{level}: NaN was clamped away");
            assert_eq!(&c[2..], &[1.0, 1.0]);
        }
    }
}
