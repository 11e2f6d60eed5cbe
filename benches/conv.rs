//! Convolution forward and backward-data on ResNet-50 layer shapes, beside a bare `matrixmultiply::sgemm` of the
//! same M×K×N (the im2col GEMM the convolution performs). Throughput is reported in FLOP/s ("elem/s" =
//! floating-point operations per second). Conv runs on 1 thread (same as the bare sgemm) and on all threads.
//!
//! The packed-weight paths the fused graph uses run beside it on all threads: im2col + packed GEMM against Winograd
//! F(2×2, 3×3) on the 3×3 layers (`packed_*` / `winograd_*`), and on MobileNet depthwise layers the generic
//! row-by-row kernel (`depthwise_generic_*`, f64-capable) against the f32 kernel the graph runs (`depthwise_flat_*`:
//! channel-blocked where the channels are whole vectors) and its per-plane kernels (`depthwise_per_plane_*`),
//! and the input gradients of both (`depthwise_flat_backward_*`, `depthwise_per_plane_backward_*`).
//!
//! A second group (`resnet/…`) times ResNet layers as the fused graph runs them: the strided stem and 3×3/2 layers,
//! a 1×1 projection with its residual in the epilogue beside the separate Add and ReLU, and the 3×3/2 max pool.
//!
//! A third group (`mobilenet/…`) times pointwise layers (MobileNetV2's, and the 7²–28² shapes where the pixel-row
//! layout starts and stops paying) on one thread and on all, the planes up to 28² on both layouts, and the 112²
//! expansion with its data evicted from the caches between calls (`cold_*`).
//!
//! Run: `cargo bench --bench conv`. Numbers go into BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gradcam_kernels::conv_packed::{conv2d_forward_packed, conv2d_forward_packed_residual};
use gradcam_kernels::{
    conv2d_backward_data, conv2d_forward, depthwise_flat, max_pool2d_argmax, max_pool2d_forward, simd, Clamp,
    ConvGeometry, PackedConv, PoolGeometry,
};
use std::hint::black_box;
use std::time::Duration;

struct Layer {
    name: &'static str,
    cin: usize,
    cout: usize,
    k: usize,
    hw: usize,
}

const LAYERS: &[Layer] = &[
    Layer { name: "3x3_64-64_56", cin: 64, cout: 64, k: 3, hw: 56 },
    Layer { name: "3x3_128-128_28", cin: 128, cout: 128, k: 3, hw: 28 },
    Layer { name: "3x3_256-256_14", cin: 256, cout: 256, k: 3, hw: 14 },
    Layer { name: "3x3_512-512_7", cin: 512, cout: 512, k: 3, hw: 7 },
    Layer { name: "1x1_64-256_56", cin: 64, cout: 256, k: 1, hw: 56 },
    Layer { name: "1x1_256-64_56", cin: 256, cout: 64, k: 1, hw: 56 },
    Layer { name: "1x1_1024-256_14", cin: 1024, cout: 256, k: 1, hw: 14 },
    Layer { name: "1x1_2048-512_7", cin: 2048, cout: 512, k: 1, hw: 7 },
];

fn geometry(l: &Layer) -> ConvGeometry {
    let p = l.k / 2;
    ConvGeometry {
        batch: 1,
        in_channels: l.cin,
        in_h: l.hw,
        in_w: l.hw,
        out_channels: l.cout,
        kernel_h: l.k,
        kernel_w: l.k,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: p,
        pad_left: p,
        pad_bottom: p,
        pad_right: p,
        groups: 1,
    }
}

fn data(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()
}

fn bench(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let all = rayon::ThreadPoolBuilder::new().build().unwrap();
    let threads = all.current_num_threads();
    let mut group = c.benchmark_group("conv");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for l in LAYERS {
        let geo = geometry(l);
        let (m, k, n) = (l.cout, l.cin * l.k * l.k, l.hw * l.hw);
        group.throughput(Throughput::Elements(geo.flops() as u64));
        let (x, w) = (data(l.cin * n), data(m * k));
        let (a, b) = (data(m * k), data(k * n));
        let mut y = vec![0f32; m * n];
        group.bench_function(BenchmarkId::new("sgemm_1t", l.name), |bch| {
            bch.iter(|| {
                // SAFETY: a is m×k, b is k×n, y is m×n, all row-major and exclusively borrowed here.
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
                        y.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
                black_box(&y);
            })
        });
        group.bench_function(BenchmarkId::new("forward_1t", l.name), |bch| {
            one.install(|| bch.iter(|| conv2d_forward(&geo, black_box(&x), &w, None, &mut y)))
        });
        group.bench_function(BenchmarkId::new(format!("forward_{threads}t"), l.name), |bch| {
            all.install(|| bch.iter(|| conv2d_forward(&geo, black_box(&x), &w, None, &mut y)))
        });
        let level = simd::level();
        let packed = PackedConv::new(level, &w, None, m, l.cin, [l.k, l.k], 1);
        // Small planes also on the transposed product (output pixels on the tile's rows), where this CPU has it.
        let pixel_rows = (l.hw <= 14).then(|| PackedConv::pixel_rows(level, &w, None, m, l.cin, [l.k, l.k])).flatten();
        let winograd = (l.k == 3).then(|| PackedConv::winograd(level, &w, None, m, l.cin));
        let layouts = [("packed", Some(&packed)), ("pixel_rows", pixel_rows.as_ref()), ("winograd", winograd.as_ref())];
        for (name, weights) in layouts.into_iter().filter_map(|(n, w)| w.map(|w| (n, w))) {
            group.bench_function(BenchmarkId::new(format!("{name}_{threads}t"), l.name), |bch| {
                all.install(|| bch.iter(|| conv2d_forward_packed(&geo, black_box(&x), weights, Clamp::RELU, &mut y)))
            });
        }
        let mut dx = vec![0f32; x.len()];
        group.bench_function(BenchmarkId::new("backward_data_1t", l.name), |bch| {
            one.install(|| bch.iter(|| conv2d_backward_data(&geo, &w, black_box(&y), &mut dx)))
        });
        group.bench_function(BenchmarkId::new(format!("backward_data_{threads}t"), l.name), |bch| {
            all.install(|| bch.iter(|| conv2d_backward_data(&geo, &w, black_box(&y), &mut dx)))
        });
    }
    // MobileNetV2's depthwise layers (3×3), then EfficientNet-Lite0's 5×5 ones: (channels, input size, stride,
    // kernel).
    for (channels, hw, stride, k) in [
        (96, 112, 2, 3),
        (144, 56, 1, 3),
        (144, 56, 2, 3),
        (192, 28, 1, 3),
        (192, 28, 2, 3),
        (384, 14, 1, 3),
        (576, 14, 1, 3),
        (576, 14, 2, 3),
        (960, 7, 1, 3),
        (144, 56, 2, 5),
        (240, 28, 1, 5),
        (672, 14, 1, 5),
        (1152, 7, 1, 5),
    ] {
        let geo = ConvGeometry {
            in_channels: channels,
            out_channels: channels,
            groups: channels,
            in_h: hw,
            in_w: hw,
            stride_h: stride,
            stride_w: stride,
            ..geometry(&Layer { name: "", cin: channels, cout: channels, k, hw })
        };
        let name = format!("dw{k}x{k}_{channels}_{hw}_s{stride}");
        group.throughput(Throughput::Elements(geo.flops() as u64));
        let (x, w, b) = (data(channels * hw * hw), data(channels * k * k), data(channels));
        let mut y = vec![0f32; channels * geo.out_h().unwrap() * geo.out_w().unwrap()];
        group.bench_function(BenchmarkId::new(format!("depthwise_generic_{threads}t"), &name), |bch| {
            // The generic kernel as f64 gradient checks use it (f64 data: no f32 fast path).
            let (x, w, b): (Vec<f64>, Vec<f64>, Vec<f64>) = (
                x.iter().map(|&v| v as f64).collect(),
                w.iter().map(|&v| v as f64).collect(),
                b.iter().map(|&v| v as f64).collect(),
            );
            let mut y = vec![0f64; y.len()];
            all.install(|| bch.iter(|| conv2d_forward(&geo, black_box(&x), &w, Some(&b), &mut y)))
        });
        group.bench_function(BenchmarkId::new(format!("depthwise_flat_{threads}t"), &name), |bch| {
            let level = simd::level();
            all.install(|| {
                bch.iter(|| depthwise_flat::forward(&geo, black_box(&x), &w, &b, Clamp::RELU, &mut y, level))
            })
        });
        // The same layer plane by plane: the kernels `depthwise_flat::forward` picks for channels that are not
        // whole vectors, and the peer of its channel-blocked kernel.
        group.bench_function(BenchmarkId::new(format!("depthwise_per_plane_{threads}t"), &name), |bch| {
            let level = simd::level();
            all.install(|| {
                bch.iter(|| depthwise_flat::forward_per_plane(&geo, black_box(&x), &w, &b, Clamp::RELU, &mut y, level))
            })
        });
        // The input gradient (saliency, guided backpropagation and attacks run it through every layer).
        group.bench_function(BenchmarkId::new(format!("depthwise_flat_backward_{threads}t"), &name), |bch| {
            let level = simd::level();
            let mut dx = vec![0f32; x.len()];
            all.install(|| bch.iter(|| depthwise_flat::backward_data(&geo, &w, black_box(&y), &mut dx, level)))
        });
        group.bench_function(BenchmarkId::new(format!("depthwise_per_plane_backward_{threads}t"), &name), |bch| {
            let level = simd::level();
            let mut dx = vec![0f32; x.len()];
            all.install(|| {
                bch.iter(|| depthwise_flat::backward_data_per_plane(&geo, &w, black_box(&y), &mut dx, level))
            })
        });
    }
    group.finish();
}

/// ResNet layers as the fused graph runs them (all threads): the 7×7/2 stem and a 3×3/2 layer (packed from stride
/// phases), a 1×1 projection with and without its residual joining in the epilogue (against the separate `Add` and
/// ReLU passes it replaces), and the 3×3/2 max pool (values only, as a forward pass runs it).
fn resnet_layers(c: &mut Criterion) {
    let all = rayon::ThreadPoolBuilder::new().build().unwrap();
    let threads = all.current_num_threads();
    let level = simd::level();
    let mut group = c.benchmark_group("resnet");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let strided = |cin: usize, cout: usize, k: usize, hw: usize| ConvGeometry {
        stride_h: 2,
        stride_w: 2,
        ..geometry(&Layer { name: "", cin, cout, k, hw })
    };
    for (name, geo) in [
        ("stem_7x7s2_3-64_224", strided(3, 64, 7, 224)),
        ("stem_3x3s2_3-32_224", strided(3, 32, 3, 224)),
        ("3x3s2_64-128_56", strided(64, 128, 3, 56)),
    ] {
        let (x, w) = (data(geo.in_channels * geo.in_h * geo.in_w), data(geo.out_channels * geo.k()));
        let packed =
            PackedConv::new(level, &w, None, geo.out_channels, geo.in_channels, [geo.kernel_h, geo.kernel_w], 1);
        let mut y = vec![0f32; geo.out_channels * geo.out_h().unwrap_or(0) * geo.out_w().unwrap_or(0)];
        group.throughput(Throughput::Elements(geo.flops() as u64));
        group.bench_function(BenchmarkId::new(format!("packed_{threads}t"), name), |bch| {
            all.install(|| bch.iter(|| conv2d_forward_packed(&geo, black_box(&x), &packed, Clamp::RELU, &mut y)))
        });
    }
    let geo = geometry(&Layer { name: "", cin: 64, cout: 256, k: 1, hw: 56 });
    let (x, w, residual) = (data(64 * 56 * 56), data(256 * 64), data(256 * 56 * 56));
    let packed = PackedConv::new(level, &w, None, 256, 64, [1, 1], 1);
    let mut y = vec![0f32; residual.len()];
    group.throughput(Throughput::Elements(geo.flops() as u64));
    group.bench_function(BenchmarkId::new(format!("then_add_relu_{threads}t"), "1x1_64-256_56"), |bch| {
        all.install(|| {
            bch.iter(|| {
                conv2d_forward_packed(&geo, black_box(&x), &packed, Clamp::NONE, &mut y);
                let sum: Vec<f32> = y.iter().zip(&residual).map(|(a, b)| a + b).collect();
                black_box(sum.iter().map(|v| v.max(0.0)).collect::<Vec<f32>>())
            })
        })
    });
    group.bench_function(BenchmarkId::new(format!("residual_epilogue_{threads}t"), "1x1_64-256_56"), |bch| {
        all.install(|| {
            bch.iter(|| conv2d_forward_packed_residual(&geo, black_box(&x), &packed, Clamp::RELU, &residual, &mut y))
        })
    });
    let pool = PoolGeometry {
        planes: 64,
        in_h: 112,
        in_w: 112,
        out_h: 56,
        out_w: 56,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 2,
        stride_w: 2,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: 1,
        pad_left: 1,
        pad_bottom: 1,
        pad_right: 1,
    };
    let x = data(64 * 112 * 112);
    let mut y = vec![0f32; 64 * 56 * 56];
    let mut argmax = vec![0u32; y.len()];
    group.throughput(Throughput::Elements((64 * 56 * 56 * 9) as u64));
    group.bench_function(BenchmarkId::new(format!("max_pool_{threads}t"), "3x3s2_64_112"), |bch| {
        all.install(|| bch.iter(|| max_pool2d_forward(&pool, black_box(&x), &mut y)))
    });
    group.bench_function(BenchmarkId::new(format!("max_pool_argmax_{threads}t"), "3x3s2_64_112"), |bch| {
        all.install(|| bch.iter(|| max_pool2d_argmax(&pool, black_box(&x), &mut argmax)))
    });
    group.finish();
}

/// MobileNetV2's pointwise (1×1) layers as the fused graph runs them (ReLU6 on expansions, none on projections), on
/// one thread and on all: the small planes (14², 7²) with long K are where the forward pass trails onnxruntime most.
fn mobilenet_layers(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let all = rayon::ThreadPoolBuilder::new().build().unwrap();
    let threads = all.current_num_threads();
    let level = simd::level();
    let mut group = c.benchmark_group("mobilenet");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    // (name, cin, cout, plane side, ReLU6, batch): batch 8 runs the largest planes on inputs that no longer fit
    // in L2, as a batched forward pass meets them.
    let layers = [
        ("1x1_16-96_112", 16, 96, 112, true, 1),
        ("1x1_144-24_56", 144, 24, 56, false, 1),
        ("1x1_192-32_28", 192, 32, 28, false, 1),
        ("1x1_96-576_14", 96, 576, 14, true, 1),
        ("1x1_576-96_14", 576, 96, 14, false, 1),
        ("1x1_384-64_14", 384, 64, 14, false, 1),
        ("1x1_160-960_7", 160, 960, 7, true, 1),
        ("1x1_960-320_7", 960, 320, 7, false, 1),
        ("1x1_320-1280_7", 320, 1280, 7, true, 1),
        ("1x1_16-96_112_b8", 16, 96, 112, true, 8),
        // Where the transposed product (pixel rows) starts and stops paying: EfficientNet-Lite0's and MobileNetV2's
        // other 7² shapes, ResNet-50's 14² and 28² bottleneck convolutions.
        ("1x1_960-160_7", 960, 160, 7, false, 1),
        ("1x1_192-1152_7", 192, 1152, 7, true, 1),
        ("1x1_64-384_7", 64, 384, 7, true, 1),
        ("1x1_256-1024_14", 256, 1024, 14, false, 1),
        ("1x1_1024-256_14", 1024, 256, 14, false, 1),
        ("1x1_512-128_28", 512, 128, 28, false, 1),
        ("1x1_128-512_28", 128, 512, 28, false, 1),
        ("1x1_144-24_56_b8", 144, 24, 56, false, 8),
    ];
    for (name, cin, cout, hw, relu6, batch) in layers {
        let geo = ConvGeometry { batch, ..geometry(&Layer { name: "", cin, cout, k: 1, hw }) };
        let (x, w, b) = (data(batch * cin * hw * hw), data(cout * cin), data(cout));
        let packed = PackedConv::new(level, &w, Some(&b), cout, cin, [1, 1], 1);
        // The planes up to 28² also on the transposed product, where this CPU has it (the graph picks it only where
        // `conv_pixel_rows::wins`).
        let pixel_rows = (hw <= 28).then(|| PackedConv::pixel_rows(level, &w, Some(&b), cout, cin, [1, 1])).flatten();
        let clamp = if relu6 { Clamp { lo: 0.0, hi: 6.0 } } else { Clamp::NONE };
        let mut y = vec![0f32; batch * cout * hw * hw];
        group.throughput(Throughput::Elements(geo.flops() as u64));
        for (pool, t) in [(&one, 1), (&all, threads)] {
            for (layout, weights) in [("packed", Some(&packed)), ("pixel_rows", pixel_rows.as_ref())] {
                let Some(weights) = weights else { continue };
                group.bench_function(BenchmarkId::new(format!("{layout}_{t}t"), name), |bch| {
                    pool.install(|| bch.iter(|| conv2d_forward_packed(&geo, black_box(&x), weights, clamp, &mut y)))
                });
            }
        }
        if name == "1x1_16-96_112" {
            // The same layer as a forward pass meets it: its 4.8 MB output and its input evicted from the caches by
            // the rest of the network (here 64 MB written between calls, untimed). On the Zen 4 VM this doubled the
            // time (memory-bound: the stores first read each line in), which is why its in-model time is 2× the
            // warm one above. `GRADCAM_BENCH_FLUSH_MB` sets how much is written (e.g. 12 for an L3-sized flush).
            let mb: usize = std::env::var("GRADCAM_BENCH_FLUSH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
            let mut flush = vec![0f32; mb << 18];
            group.bench_function(BenchmarkId::new(format!("cold_{threads}t"), name), |bch| {
                all.install(|| {
                    bch.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for i in 0..iters {
                            flush.iter_mut().for_each(|v| *v += i as f32);
                            black_box(&flush);
                            let t = std::time::Instant::now();
                            conv2d_forward_packed(&geo, black_box(&x), &packed, clamp, &mut y);
                            total += t.elapsed();
                        }
                        total
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, resnet_layers, mobilenet_layers);
criterion_main!(benches);
