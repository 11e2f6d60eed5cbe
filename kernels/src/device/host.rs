//! The kernel sources built for the host, for tests on machines without a GPU.
//!
//! The system C++ compiler (`CXX`, else `c++`) compiles `host_shim.h` + the prelude + every source into a shared
//! library once per process; each kernel then runs as a single thread of a one-block grid, which its grid-stride
//! loop turns into a loop over all work items — the same arithmetic per work item as on the GPU. Matrix products
//! use `matrixmultiply` with the row-major meaning of [`GemmCall`] (what cuBLAS is asked for through
//! [`ColumnMajorGemm`], itself tested against a column-major reference). What this cannot check: launch shapes,
//! cudarc's calls and NVRTC's dialect — those need a GPU.

use super::{Backend, Buffer, DeviceError, GemmCall, RawArgs, Result};
use std::path::PathBuf;
use std::sync::OnceLock;

const SHIM: &str = include_str!("../../cuda/host_shim.h");

type Kernel = unsafe extern "C" fn(RawArgs);

/// The compiled kernels, shared by the whole process.
fn library() -> Result<&'static libloading::Library> {
    static LIBRARY: OnceLock<std::result::Result<libloading::Library, DeviceError>> = OnceLock::new();
    LIBRARY.get_or_init(compile).as_ref().map_err(Clone::clone)
}

fn compile() -> Result<libloading::Library> {
    // A directory of our own: created here (it must not exist yet), so nobody else's library can be loaded.
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("gradcam-device-emulation-{}-{stamp}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| DeviceError::Compile(format!("{}: {e}", dir.display())))?;
    let built = build_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    built
}

fn build_in(dir: &std::path::Path) -> Result<libloading::Library> {
    let source: PathBuf = dir.join("kernels.cpp");
    let library: PathBuf = dir.join("kernels.so");
    std::fs::write(&source, format!("{SHIM}\n{}", super::program()))
        .map_err(|e| DeviceError::Compile(format!("{}: {e}", source.display())))?;
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let output = std::process::Command::new(&compiler)
        .args(["-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Werror", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .map_err(|e| DeviceError::Compile(format!("cannot run the C++ compiler '{compiler}': {e}")))?;
    if !output.status.success() {
        return Err(DeviceError::Compile(String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    // SAFETY: the library was just built from our own sources in a directory this call created; loading it runs
    // no initializers besides the C++ runtime's.
    unsafe { libloading::Library::new(&library) }
        .map_err(|e| DeviceError::Compile(format!("{}: {e}", library.display())))
}

pub struct HostEmulation {
    library: &'static libloading::Library,
}

impl HostEmulation {
    pub fn open() -> Result<HostEmulation> {
        Ok(HostEmulation { library: library()? })
    }
}

impl Backend for HostEmulation {
    fn name(&self) -> String {
        "host emulation of the CUDA kernels".to_string()
    }

    fn space(&self) -> u64 {
        0
    }

    fn zeros(&self, len: usize) -> Result<Buffer> {
        let mut data = vec![0.0f32; len];
        let ptr = data.as_mut_ptr() as u64;
        Ok(Buffer { ptr, len, space: 0, _owner: Box::new(data) })
    }

    fn upload(&self, data: &[f32]) -> Result<Buffer> {
        let mut data = data.to_vec();
        let ptr = data.as_mut_ptr() as u64;
        Ok(Buffer { ptr, len: data.len(), space: 0, _owner: Box::new(data) })
    }

    fn download(&self, buffer: &Buffer, out: &mut [f32]) -> Result<()> {
        let data = buffer
            ._owner
            .downcast_ref::<Vec<f32>>()
            .ok_or_else(|| DeviceError::Size("a buffer of another device".into()))?;
        if out.len() != data.len() {
            return Err(DeviceError::Size(format!("download of {} elements into {}", data.len(), out.len())));
        }
        out.copy_from_slice(data);
        Ok(())
    }

    unsafe fn launch(&self, kernel: &'static str, args: &RawArgs) -> Result<()> {
        // SAFETY: every kernel of the sources has the signature `void(Args)`, which `Kernel` is.
        let function = unsafe { self.library.get::<Kernel>(kernel.as_bytes()) }
            .map_err(|e| DeviceError::Call { what: kernel.to_string(), why: e.to_string() })?;
        // SAFETY: the caller guarantees the addresses in `args` cover what the kernel touches.
        unsafe { function(*args) };
        Ok(())
    }

    unsafe fn gemm(&self, call: &GemmCall) -> Result<()> {
        if call.count != 1 {
            for i in 0..call.count {
                // SAFETY: the caller guarantees every product of the batch lies in live buffers.
                unsafe { self.gemm(&call.nth(i))? };
            }
            return Ok(());
        }
        let (m, n, k) = (call.m, call.n, call.k);
        let (rsa, csa) = if call.trans_a { (1, m as isize) } else { (k as isize, 1) };
        let (rsb, csb) = if call.trans_b { (1, k as isize) } else { (n as isize, 1) };
        // SAFETY: the caller guarantees A, B and C hold m×k, k×n and m×n elements at these addresses, in the
        // layouts the strides describe.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                call.alpha,
                call.a as *const f32,
                rsa,
                csa,
                call.b as *const f32,
                rsb,
                csb,
                call.beta,
                call.c as *mut f32,
                n as isize,
                1,
            )
        };
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
