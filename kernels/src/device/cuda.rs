//! The CUDA backend, through cudarc with every library loaded at run time (`dynamic-loading`: a `--features cuda`
//! build links nothing of CUDA and runs on machines without it). The driver, NVRTC and cuBLAS are looked for before
//! the first call into them, so a missing one is a [`DeviceError::MissingLibrary`] naming it (cudarc itself would
//! panic). The kernels are compiled by NVRTC once per process and device and shared by every [`Cuda`] opened on it.
//!
//! Reproducibility: one stream per device; cuBLAS SGEMM picks its algorithm from the shapes and the GPU, and with a
//! single stream and no split-K workspace changes it is deterministic from run to run on one GPU and library
//! version (NVIDIA's cuBLAS documentation, "Results reproducibility"); results may differ across GPUs or versions.

use super::{Backend, Buffer, ColumnMajorGemm, DeviceError, GemmCall, RawArgs, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

// SAFETY: RawArgs is #[repr(C)] plain data (integers and floats), laid out as `Args` in prelude.cuh.
unsafe impl DeviceRepr for RawArgs {}

/// Threads per block of every launch; the grid-stride loops make any shape correct.
const BLOCK: u32 = 256;
/// Most blocks of one launch: enough to fill any current GPU, few enough to keep each thread busy.
const MAX_BLOCKS: u32 = 65_535;

/// The libraries the CUDA path loads, checked in this order.
fn check_libraries() -> Result<()> {
    // SAFETY: each check only tries to open the library by cudarc's candidate names (dlopen); nothing is called.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    if !driver {
        return Err(DeviceError::MissingLibrary { library: "libcuda.so", purpose: "NVIDIA driver" });
    }
    // SAFETY: as above.
    let nvrtc = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    if !nvrtc {
        return Err(DeviceError::MissingLibrary { library: "libnvrtc.so", purpose: "CUDA runtime compiler (NVRTC)" });
    }
    // SAFETY: as above.
    let cublas = unsafe { cudarc::cublas::sys::is_culib_present() };
    if !cublas {
        return Err(DeviceError::MissingLibrary { library: "libcublas.so", purpose: "cuBLAS" });
    }
    Ok(())
}

/// The kernel program compiled by NVRTC (which needs no GPU and no driver, only its own library).
fn compile() -> Result<cudarc::nvrtc::Ptx> {
    let options = cudarc::nvrtc::CompileOptions { name: Some("gradcam.cu".into()), ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(super::program(), options).map_err(|e| DeviceError::Compile(format!("{e:?}")))
}

/// The PTX NVRTC makes of the kernel program, where NVRTC can be loaded: lets machines without a GPU check that
/// the sources compile as CUDA (the host emulation compiles them as C++).
pub fn compile_to_ptx() -> Result<String> {
    // SAFETY: only tries to open the library by cudarc's candidate names (dlopen); nothing is called.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(DeviceError::MissingLibrary { library: "libnvrtc.so", purpose: "CUDA runtime compiler (NVRTC)" });
    }
    Ok(compile()?.to_src())
}

fn call_error(what: &str, why: impl std::fmt::Debug) -> DeviceError {
    DeviceError::Call { what: what.to_string(), why: format!("{why:?}") }
}

/// What one device shares between every [`Cuda`] opened on it.
struct Shared {
    ctx: Arc<CudaContext>,
    ordinal: usize,
    stream: Arc<CudaStream>,
    blas: cudarc::cublas::CudaBlas,
    functions: HashMap<&'static str, CudaFunction>,
    name: String,
    /// Serializes cuBLAS calls: a handle is not to be used from two threads at once.
    blas_lock: Mutex<()>,
}

/// Devices opened so far in this process, by ordinal.
fn opened() -> &'static Mutex<HashMap<usize, Arc<Shared>>> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Arc<Shared>>>> = OnceLock::new();
    OPENED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Device memory that makes its context current before it is freed, whatever thread drops it (the free is
/// queued on the device's stream, after the work that uses it).
struct DeviceSlice {
    slice: Option<CudaSlice<f32>>,
    ctx: Arc<CudaContext>,
}

impl Drop for DeviceSlice {
    fn drop(&mut self) {
        // A failure here leaves the memory to the context's teardown; cudarc records the error.
        let _ = self.ctx.bind_to_thread();
        drop(self.slice.take());
    }
}

pub(crate) struct Cuda {
    shared: Arc<Shared>,
}

impl Cuda {
    pub(crate) fn open(ordinal: usize) -> Result<Cuda> {
        let mut map = opened().lock().map_err(|_| call_error("open", "a previous open panicked"))?;
        if let Some(shared) = map.get(&ordinal) {
            return Ok(Cuda { shared: shared.clone() });
        }
        check_libraries()?;
        let count = CudaContext::device_count().map_err(|e| call_error("cuDeviceGetCount", e))?;
        let count = usize::try_from(count).unwrap_or(0);
        if ordinal >= count {
            return Err(DeviceError::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| call_error("cuCtxCreate", e))?;
        // SAFETY: gradcam uses one stream per device and passes raw device addresses to its kernels, which
        // cudarc's events cannot follow anyway: the stream's own order is what orders every use of a buffer.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().map_err(|e| call_error("cuDeviceGetName", e))?;
        let stream = ctx.default_stream();
        let ptx = compile()?;
        let module = ctx.load_module(ptx).map_err(|e| call_error("cuModuleLoadData", e))?;
        let mut functions = HashMap::new();
        for kernel in super::KERNELS {
            let f =
                module.load_function(kernel).map_err(|e| call_error(&format!("cuModuleGetFunction {kernel}"), e))?;
            functions.insert(kernel, f);
        }
        let blas = cudarc::cublas::CudaBlas::new(stream.clone()).map_err(|e| call_error("cublasCreate", e))?;
        let shared = Arc::new(Shared {
            ctx,
            ordinal,
            stream,
            blas,
            functions,
            name: format!("{name} (cuda:{ordinal})"),
            blas_lock: Mutex::new(()),
        });
        map.insert(ordinal, shared.clone());
        Ok(Cuda { shared })
    }

    fn wrap(&self, slice: CudaSlice<f32>) -> Buffer {
        let (ptr, sync) = slice.device_ptr(&self.shared.stream);
        drop(sync);
        let len = slice.len();
        let owner = DeviceSlice { slice: Some(slice), ctx: self.shared.ctx.clone() };
        Buffer { ptr, len, space: self.space(), _owner: Box::new(owner) }
    }

    fn bind(&self) -> Result<()> {
        self.shared.ctx.bind_to_thread().map_err(|e| call_error("cuCtxSetCurrent", e))
    }
}

impl Backend for Cuda {
    fn name(&self) -> String {
        self.shared.name.clone()
    }

    fn space(&self) -> u64 {
        self.shared.ordinal as u64 + 1
    }

    fn zeros(&self, len: usize) -> Result<Buffer> {
        let slice = self.shared.stream.alloc_zeros::<f32>(len.max(1)).map_err(|e| call_error("cuMemAlloc", e))?;
        let mut buffer = self.wrap(slice);
        buffer.len = len;
        Ok(buffer)
    }

    fn upload(&self, data: &[f32]) -> Result<Buffer> {
        if data.is_empty() {
            return self.zeros(0);
        }
        let slice = self.shared.stream.clone_htod(data).map_err(|e| call_error("cuMemcpyHtoD", e))?;
        Ok(self.wrap(slice))
    }

    fn download(&self, buffer: &Buffer, out: &mut [f32]) -> Result<()> {
        let slice = buffer
            ._owner
            .downcast_ref::<DeviceSlice>()
            .and_then(|d| d.slice.as_ref())
            .ok_or_else(|| call_error("download", "a buffer of another device"))?;
        if out.len() != buffer.len {
            return Err(DeviceError::Size(format!("download of {} elements into {}", buffer.len, out.len())));
        }
        if buffer.len == 0 {
            return Ok(());
        }
        self.shared.stream.memcpy_dtoh(slice, out).map_err(|e| call_error("cuMemcpyDtoH", e))
    }

    unsafe fn launch(&self, kernel: &'static str, args: &RawArgs) -> Result<()> {
        let function = self.shared.functions.get(kernel).ok_or_else(|| call_error(kernel, "no such kernel"))?;
        let items = u64::try_from(args.n).unwrap_or(0);
        let blocks = items.div_ceil(u64::from(BLOCK)).clamp(1, u64::from(MAX_BLOCKS)) as u32;
        let config = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        let mut builder = self.shared.stream.launch_builder(function);
        builder.arg(args);
        // SAFETY: the caller guarantees the addresses in `args` cover what the kernel touches; the kernel takes
        // exactly one `Args` by value, which `args` is.
        unsafe { builder.launch(config) }.map_err(|e| call_error(&format!("launch {kernel}"), e))?;
        Ok(())
    }

    unsafe fn gemm(&self, call: &GemmCall) -> Result<()> {
        let cm = ColumnMajorGemm::of(call);
        let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let int = |v: usize| i32::try_from(v).map_err(|_| DeviceError::Size(format!("product size {v} over 2^31")));
        let _guard = self.shared.blas_lock.lock().map_err(|_| call_error("cublasSgemm", "a previous call panicked"))?;
        self.bind()?;
        let (m, n, k) = (int(cm.m)?, int(cm.n)?, int(cm.k)?);
        let (ld_first, ld_second, ldc) = (int(cm.ld_first.max(1))?, int(cm.ld_second.max(1))?, int(cm.ldc.max(1))?);
        let (first, second, c) = (cm.first as *const f32, cm.second as *const f32, cm.c as *mut f32);
        let (op_first, op_second, handle) = (op(cm.trans_first), op(cm.trans_second), *self.shared.blas.handle());
        let (alpha, beta) = (&call.alpha, &call.beta);
        if call.count != 1 {
            let long = |v: usize| i64::try_from(v).map_err(|_| DeviceError::Size(format!("product stride {v}")));
            let strides = (long(cm.stride_first)?, long(cm.stride_second)?, long(cm.stride_c)?);
            // SAFETY: as below, for each of the `count` products (the caller checked the first and the last, and
            // the strides are not negative).
            return unsafe {
                cudarc::cublas::result::sgemm_strided_batched(
                    handle,
                    op_first,
                    op_second,
                    m,
                    n,
                    k,
                    alpha,
                    first,
                    ld_first,
                    strides.0,
                    second,
                    ld_second,
                    strides.1,
                    beta,
                    c,
                    ldc,
                    strides.2,
                    int(call.count)?,
                )
            }
            .map_err(|e| call_error("cublasSgemmStridedBatched", e));
        }
        // SAFETY: the caller guarantees the three addresses hold the matrices of these shapes; the handle is bound
        // to this device's stream, its context is current, and one thread at a time uses it (blas_lock).
        unsafe {
            cudarc::cublas::result::sgemm(
                handle, op_first, op_second, m, n, k, alpha, first, ld_first, second, ld_second, beta, c, ldc,
            )
        }
        .map_err(|e| call_error("cublasSgemm", e))
    }

    fn synchronize(&self) -> Result<()> {
        self.shared.stream.synchronize().map_err(|e| call_error("cuStreamSynchronize", e))
    }
}
