//! Devices besides the CPU: buffers in device memory and the kernels of `kernels/cuda/*.cu` launched on them.
//!
//! [`Device`] is the safe face: every method checks that the buffers it is given hold what the kernel will read
//! and write before it launches anything, so a wrong size is an error, never an out-of-bounds access. Behind it a
//! [`Backend`] does the launches: CUDA through cudarc (feature `cuda`; the driver, NVRTC and cuBLAS are loaded at
//! run time, nothing is linked), or, for tests on machines without a GPU, the same kernel sources compiled for the
//! host by the system C++ compiler (feature `device-emulation`; see [`host`]).
//!
//! Every kernel takes one argument block ([`RawArgs`], `Args` in `prelude.cuh`) and walks its work items with a
//! grid-stride loop, each item writing its own outputs and summing in a fixed order (no atomics): results do not
//! depend on the launch shape, and repeat bit for bit from run to run. Matrix products go to cuBLAS, which is
//! reproducible from run to run on one GPU with one library version as long as it is not asked to split the
//! reduction across streams (gradcam uses one stream and the default workspace; see `device/cuda.rs`).

mod kernels;
mod lrn;
mod resample;
pub use kernels::{Activation, BinaryOp, MAX_RANK};
pub use lrn::LrnParameters;
pub use resample::{transpose_taps, ResampleTable, Taps};

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
pub use cuda::compile_to_ptx;
#[cfg(feature = "device-emulation")]
pub mod host;

use std::fmt;

/// The sources NVRTC (or the host compiler) builds, in order, after [`PRELUDE`].
pub const SOURCES: [(&str, &str); 7] = [
    ("elementwise.cu", include_str!("../../cuda/elementwise.cu")),
    ("conv.cu", include_str!("../../cuda/conv.cu")),
    ("pool.cu", include_str!("../../cuda/pool.cu")),
    ("layout.cu", include_str!("../../cuda/layout.cu")),
    ("rows.cu", include_str!("../../cuda/rows.cu")),
    ("resample.cu", include_str!("../../cuda/resample.cu")),
    ("lrn.cu", include_str!("../../cuda/lrn.cu")),
];

/// Definitions every source relies on (the argument block, the grid-stride loop).
pub const PRELUDE: &str = include_str!("../../cuda/prelude.cuh");

/// Every kernel the sources define, by name.
pub const KERNELS: [&str; 27] = [
    "activation_forward",
    "activation_backward",
    "binary_forward",
    "binary_backward",
    "channel_affine",
    "im2col",
    "col2im",
    "conv_direct",
    "conv_direct_backward_data",
    "max_pool_forward",
    "max_pool_backward",
    "avg_pool_forward",
    "avg_pool_backward",
    "plane_mean",
    "plane_mean_backward",
    "box_read",
    "box_write",
    "permute",
    "strided_read",
    "strided_write",
    "softmax_rows",
    "softmax_rows_backward",
    "layer_norm_rows",
    "layer_norm_rows_backward",
    "axis_resample",
    "lrn_forward",
    "lrn_backward",
];

/// The whole program: the prelude, then every source.
pub fn program() -> String {
    let mut text = String::from(PRELUDE);
    for (name, source) in SOURCES {
        text.push_str(&format!("\n// ---- {name}\n"));
        text.push_str(source);
    }
    text
}

/// Why a device could not be used or a launch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// This build has no CUDA support.
    NotBuilt,
    /// A shared library the CUDA path needs could not be loaded.
    MissingLibrary { library: &'static str, purpose: &'static str },
    /// No GPU with this ordinal.
    NoDevice { ordinal: usize, count: usize },
    /// A call into the driver, NVRTC or cuBLAS failed.
    Call { what: String, why: String },
    /// The kernel sources did not compile (NVRTC's or the host compiler's log).
    Compile(String),
    /// A launch was asked with buffers that do not fit its shapes (a bug in the caller, caught before launching).
    Size(String),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::NotBuilt => write!(
                f,
                "this gradcam was built without CUDA support; rebuild it with `cargo build --release --features cuda`"
            ),
            DeviceError::MissingLibrary { library, purpose } => write!(
                f,
                "CUDA is not usable here: the {purpose} library ({library}) could not be loaded; install it or add \
                 its directory to LD_LIBRARY_PATH, or run on the CPU (the default, --device cpu)"
            ),
            DeviceError::NoDevice { ordinal, count } => {
                write!(f, "there is no CUDA device {ordinal}: this machine has {count}")
            }
            DeviceError::Call { what, why } => write!(f, "CUDA call {what} failed: {why}"),
            DeviceError::Compile(log) => write!(f, "the CUDA kernels did not compile: {log}"),
            DeviceError::Size(why) => write!(f, "device launch refused: {why}"),
        }
    }
}

impl std::error::Error for DeviceError {}

pub type Result<T> = std::result::Result<T, DeviceError>;

/// An f32 array in device memory. Freed when dropped.
pub struct Buffer {
    /// Device address of the first element (a host address under emulation).
    ptr: u64,
    /// The memory it lives in (see [`Backend::space`]): a launch refuses buffers of another.
    space: u64,
    len: usize,
    /// What frees the memory.
    _owner: Box<dyn std::any::Any + Send + Sync>,
}

impl Buffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of element `at`, after checking that `count` elements from there lie inside.
    fn at(&self, at: usize, count: usize, what: &str) -> Result<u64> {
        match at.checked_add(count) {
            Some(end) if end <= self.len => Ok(self.ptr + (at * 4) as u64),
            _ => Err(DeviceError::Size(format!("{what}: {count} elements from {at} in a buffer of {}", self.len))),
        }
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buffer({} f32)", self.len)
    }
}

/// The argument block of every kernel (`Args` in `prelude.cuh`, field for field).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawArgs {
    pub x: [u64; 4],
    pub y: [u64; 2],
    pub n: i64,
    pub i: [i64; 32],
    pub f: [f32; 8],
}

/// A row-major product `C (m×n) = alpha · op(A) · op(B) + beta · C`, `op(A)` m×k and `op(B)` k×n; `A` is stored
/// k×m when `trans_a`, `B` n×k when `trans_b`. Addresses are checked by [`Device`] before a backend sees them.
///
/// `count` such products, the i-th on the matrices `i·stride_*` elements after the first (a stride of 0 shares a
/// matrix, e.g. a convolution's weights across the images of a batch): one launch instead of one per image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmCall {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: u64,
    pub trans_a: bool,
    pub b: u64,
    pub trans_b: bool,
    pub c: u64,
    pub alpha: f32,
    pub beta: f32,
    pub count: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl GemmCall {
    /// The `i`-th product of the batch, alone.
    pub fn nth(&self, i: usize) -> GemmCall {
        let at = |base: u64, stride: usize| base + (i * stride * 4) as u64;
        GemmCall {
            a: at(self.a, self.stride_a),
            b: at(self.b, self.stride_b),
            c: at(self.c, self.stride_c),
            count: 1,
            ..*self
        }
    }
}

/// What a device does. The launches are `unsafe`: the caller ([`Device`]) guarantees that the addresses in the
/// arguments point into live buffers large enough for what the kernel or product touches.
pub trait Backend: Send + Sync {
    /// The device, in words (e.g. "NVIDIA H100 80GB HBM3 (cuda:0)").
    fn name(&self) -> String;
    /// Which memory its buffers live in: equal for backends whose buffers each other's kernels may read (host
    /// memory is 0, CUDA device N is N + 1).
    fn space(&self) -> u64;
    /// A zeroed buffer of `len` elements.
    fn zeros(&self, len: usize) -> Result<Buffer>;
    /// A buffer holding `data`.
    fn upload(&self, data: &[f32]) -> Result<Buffer>;
    /// Copies the whole buffer into `out` (of the buffer's length); waits for the work before it.
    fn download(&self, buffer: &Buffer, out: &mut [f32]) -> Result<()>;
    /// Launches `kernel` over `args.n` work items.
    ///
    /// # Safety
    /// Every address in `args` must point into a live buffer of this backend, holding every element the kernel
    /// reads or writes for these parameters.
    unsafe fn launch(&self, kernel: &'static str, args: &RawArgs) -> Result<()>;
    /// A matrix product, or `call.count` of them.
    ///
    /// # Safety
    /// `a`, `b` and `c` must point into live buffers of this backend holding the matrices the shapes describe,
    /// for every product of the batch.
    unsafe fn gemm(&self, call: &GemmCall) -> Result<()>;
    /// Waits until all launched work is done.
    fn synchronize(&self) -> Result<()>;
}

/// A device, ready to run kernels.
pub struct Device {
    backend: Box<dyn Backend>,
    /// The backend's memory space, checked against every buffer a launch is given.
    space: u64,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.backend.name())
    }
}

impl Device {
    /// CUDA device `ordinal`: loads the driver, NVRTC and cuBLAS, and compiles the kernels (once per process).
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            Ok(Device::with(Box::new(cuda::Cuda::open(ordinal)?)))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(DeviceError::NotBuilt)
        }
    }

    /// The kernel sources compiled for this CPU and run one work item after another: the device path's logic,
    /// testable without a GPU. Needs a C++ compiler (`CXX`, else `c++`) at run time.
    #[cfg(feature = "device-emulation")]
    pub fn host_emulation() -> Result<Device> {
        Ok(Device::with(Box::new(host::HostEmulation::open()?)))
    }

    #[cfg(any(feature = "cuda", feature = "device-emulation"))]
    fn with(backend: Box<dyn Backend>) -> Device {
        let space = backend.space();
        Device { backend, space }
    }

    /// The device, in words.
    pub fn name(&self) -> String {
        self.backend.name()
    }

    pub fn zeros(&self, len: usize) -> Result<Buffer> {
        self.backend.zeros(len)
    }

    pub fn upload(&self, data: &[f32]) -> Result<Buffer> {
        self.backend.upload(data)
    }

    /// The buffer's contents.
    pub fn download(&self, buffer: &Buffer) -> Result<Vec<f32>> {
        if buffer.space != self.space {
            return Err(DeviceError::Size("download of a buffer of another device".into()));
        }
        let mut out = vec![0.0; buffer.len()];
        self.backend.download(buffer, &mut out)?;
        Ok(out)
    }

    pub fn synchronize(&self) -> Result<()> {
        self.backend.synchronize()
    }
}

/// cuBLAS's view of a row-major product. cuBLAS is column-major, and a row-major m×n matrix is the column-major
/// n×m matrix of its transpose; so `C = op(A)·op(B)` is computed as `Cᵀ = op(B)ᵀ·op(A)ᵀ`: B's storage first,
/// A's second, the sizes m and n swapped, each leading dimension the row length of the stored matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnMajorGemm {
    pub trans_first: bool,
    pub trans_second: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub first: u64,
    pub ld_first: usize,
    pub second: u64,
    pub ld_second: usize,
    pub c: u64,
    pub ldc: usize,
    /// Elements between the products of a batch, each operand's with it (see [`GemmCall`]).
    pub stride_first: usize,
    pub stride_second: usize,
    pub stride_c: usize,
}

impl ColumnMajorGemm {
    pub fn of(call: &GemmCall) -> ColumnMajorGemm {
        ColumnMajorGemm {
            trans_first: call.trans_b,
            trans_second: call.trans_a,
            m: call.n,
            n: call.m,
            k: call.k,
            first: call.b,
            ld_first: if call.trans_b { call.k } else { call.n },
            second: call.a,
            ld_second: if call.trans_a { call.m } else { call.k },
            c: call.c,
            ldc: call.n,
            stride_first: call.stride_b,
            stride_second: call.stride_a,
            stride_c: call.stride_c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A column-major `C = op(A)·op(B)` as BLAS defines it, over slices.
    #[allow(clippy::too_many_arguments)]
    fn blas_sgemm(
        (ta, tb): (bool, bool),
        (m, n, k): (usize, usize, usize),
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
    ) {
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0.0;
                for p in 0..k {
                    let av = if ta { a[p + i * lda] } else { a[i + p * lda] };
                    let bv = if tb { b[j + p * ldb] } else { b[p + j * ldb] };
                    sum += av * bv;
                }
                c[i + j * ldc] = sum;
            }
        }
    }

    #[test]
    fn column_major_view_computes_the_row_major_product() {
        let (m, n, k) = (3, 5, 4);
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let a: Vec<f32> = (0..m * k).map(|v| (v * 7 % 11) as f32 - 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|v| (v * 5 % 13) as f32 - 6.0).collect();
            // Row-major reference with the stored layouts of GemmCall.
            let op_a = |i: usize, p: usize| if trans_a { a[p * m + i] } else { a[i * k + p] };
            let op_b = |p: usize, j: usize| if trans_b { b[j * k + p] } else { b[p * n + j] };
            let call = GemmCall {
                m,
                n,
                k,
                a: 1,
                trans_a,
                b: 2,
                trans_b,
                c: 3,
                alpha: 1.0,
                beta: 0.0,
                count: 2,
                stride_a: 10,
                stride_b: 20,
                stride_c: 30,
            };
            let cm = ColumnMajorGemm::of(&call);
            assert_eq!((cm.first, cm.second, cm.c), (2, 1, 3));
            // A batch's strides go with their operands.
            assert_eq!((cm.stride_first, cm.stride_second, cm.stride_c), (20, 10, 30));
            let mut c = vec![0.0; m * n];
            blas_sgemm(
                (cm.trans_first, cm.trans_second),
                (cm.m, cm.n, cm.k),
                &b,
                cm.ld_first,
                &a,
                cm.ld_second,
                &mut c,
                cm.ldc,
            );
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| op_a(i, p) * op_b(p, j)).sum();
                    assert_eq!(c[i * n + j], want, "trans_a {trans_a} trans_b {trans_b} at ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn every_kernel_is_defined_in_the_sources() {
        let program = program();
        for kernel in KERNELS {
            assert!(program.contains(&format!("__global__ void {kernel}(Args a)")), "{kernel}");
        }
    }

    #[test]
    fn without_the_feature_cuda_says_how_to_get_it() {
        if cfg!(feature = "cuda") {
            return;
        }
        let err = Device::cuda(0).unwrap_err();
        assert_eq!(err, DeviceError::NotBuilt);
        assert!(err.to_string().contains("--features cuda"));
    }
}

#[cfg(all(test, feature = "device-emulation"))]
mod emulation_tests;

#[cfg(all(test, feature = "cuda"))]
mod cuda_tests {
    use super::*;

    /// On a machine without the NVIDIA driver, opening a device is an error naming the driver library, not a
    /// panic inside cudarc; with a driver, it opens or names what else is missing.
    #[test]
    fn a_missing_driver_is_an_error_that_names_it() {
        // SAFETY: only tries to dlopen the driver by cudarc's candidate names.
        let driver = unsafe { cudarc::driver::sys::is_culib_present() };
        match Device::cuda(0) {
            Ok(device) => {
                assert!(driver);
                eprintln!("CUDA device found: {}", device.name());
            }
            Err(err) if !driver => {
                assert_eq!(err, DeviceError::MissingLibrary { library: "libcuda.so", purpose: "NVIDIA driver" });
                assert!(err.to_string().contains("libcuda.so"), "{err}");
            }
            Err(err) => eprintln!("CUDA present but not usable here: {err}"),
        }
    }

    /// Where NVRTC can be loaded (no GPU needed: e.g. the `nvidia-cuda-nvrtc-cu12` wheel's library on
    /// LD_LIBRARY_PATH), the kernel sources compile as CUDA and the PTX defines every kernel the launches name.
    #[test]
    fn nvrtc_compiles_every_kernel_where_it_can_be_loaded() {
        match compile_to_ptx() {
            Ok(ptx) => {
                for kernel in KERNELS {
                    assert!(ptx.contains(&format!(".entry {kernel}(")), "{kernel} is not in the PTX");
                }
                eprintln!("NVRTC compiled all {} kernels ({} bytes of PTX)", KERNELS.len(), ptx.len());
                // For tools/nvrtc_check.sh, which assembles it with ptxas for real GPUs.
                if let Some(path) = std::env::var_os("GRADCAM_PTX_OUT") {
                    std::fs::write(&path, &ptx).unwrap();
                }
            }
            Err(DeviceError::MissingLibrary { .. }) => eprintln!("NVRTC check skipped: libnvrtc cannot be loaded here"),
            Err(err) => panic!("the kernel sources do not compile as CUDA: {err}"),
        }
    }
}
