//! A per-process scratch file for targets whose loader takes a path: the fuzz input is written there (on tmpfs
//! when `/dev/shm` exists) and the loader reads it like any user file.

use std::path::PathBuf;

/// Writes `data` to this process's scratch file with the given extension and returns its path.
pub fn file_with(data: &[u8], extension: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let path = dir.join(format!("gradcam-fuzz-{}.{extension}", std::process::id()));
    std::fs::write(&path, data).expect("scratch file is writable");
    path
}
