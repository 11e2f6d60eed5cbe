//! The packed-weight GEMM microkernels of every SIMD level this CPU has, beside `matrixmultiply::sgemm` on the same
//! conv-shaped products (ResNet-50 layers as im2col GEMMs: M = C_out, K = C_in·k², N = H·W), one thread.
//! Throughput is in FLOP/s ("elem/s" = 2·M·K·N per second). Weights are packed once, outside the timed loop, as
//! the model loader does; the right operand is packed inside it, as every convolution call does.
//!
//! Beside them, `fma_peak/<level>` measures the level's FMA peak on this machine (register-only FMAs, see
//! `gradcam_kernels::peak`), so each kernel's share of the peak is a ratio of two numbers from one run.
//!
//! Run: `cargo bench --bench gemm`. Numbers go into BENCHMARKS.md with the CPU and its FMA peak.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gradcam_kernels::gemm::MatRef;
use gradcam_kernels::simd::supported_levels;
use gradcam_kernels::{Clamp, PackedA};
use std::hint::black_box;
use std::time::Duration;

/// (name, M, K, N).
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("3x3_64-64_56", 64, 576, 256),
    ("3x3_128-128_28", 128, 1152, 256),
    ("3x3_256-256_14", 256, 2304, 196),
    ("3x3_512-512_7", 512, 4608, 49),
    ("1x1_64-256_56", 256, 64, 256),
    ("1x1_256-64_56", 64, 256, 256),
    ("1x1_1024-256_14", 256, 1024, 196),
    ("1x1_2048-512_7", 512, 2048, 49),
];

fn data(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()
}

fn peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("fma_peak");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let rounds = 100_000;
    for level in supported_levels() {
        group.throughput(Throughput::Elements(gradcam_kernels::peak::probe_flops(level, rounds)));
        group.bench_function(BenchmarkId::new("registers", level.to_string()), |bch| {
            bch.iter(|| black_box(gradcam_kernels::peak::fma_peak_probe(level, black_box(rounds), 1.0)))
        });
    }
    group.finish();
}

fn bench(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut group = c.benchmark_group("gemm");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for &(name, m, k, n) in SHAPES {
        // N is one convolution task's column tile (256) or the whole plane when smaller: what a call multiplies.
        let (a, b) = (data(m * k), data(k * n));
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(BenchmarkId::new("matrixmultiply", name), |bch| {
            bch.iter(|| {
                // SAFETY: a, b, out are dense row-major m×k, k×n, m×n buffers.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                black_box(out[0])
            })
        });
        for level in supported_levels() {
            let packed = PackedA::pack(level, MatRef::row_major(&a, m, k), None);
            group.bench_function(BenchmarkId::new(format!("packed_{level}"), name), |bch| {
                one.install(|| {
                    bch.iter(|| {
                        packed.gemm(MatRef::row_major(&b, k, n), &mut out, false, Clamp::NONE);
                        black_box(out[0])
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, peak, bench);
criterion_main!(benches);
