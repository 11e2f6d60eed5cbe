//! Writing output files safely: whole or not at all, and never through a planted link.
//!
//! Each file is written to a fresh temporary name in its destination folder (created exclusively, so an existing
//! file or link of that name is never opened) and renamed over the destination when complete. A reader — or a
//! second run writing the same name — sees the old file or the new one, never a mix; a symbolic link at the
//! destination is replaced, not followed.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `path` through `write`, atomically.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let shown = path.display().to_string();
    let io = |e: std::io::Error| Error::Io { path: shown.clone(), why: e.to_string() };
    let name = path.file_name().ok_or_else(|| Error::Io { path: shown.clone(), why: "not a file name".into() })?;
    let tmp = path.with_file_name(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        w.flush()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Writes an f32 array as `.npy`, atomically.
pub fn write_npy<D: ndarray::Dimension>(path: &Path, a: &ndarray::Array<f32, D>) -> Result<()> {
    write_atomic(path, |w| ndarray_npy::WriteNpyExt::write_npy(a, w).map_err(|e| std::io::Error::other(e.to_string())))
}

/// Makes `stem` unique among those already `used` in this run: the first keeps its name, later ones get `_2`,
/// `_3`, … in the order they come (stable for a given command line).
pub fn unique_stem(used: &mut std::collections::HashMap<String, usize>, stem: &str) -> String {
    let mut candidate = stem.to_string();
    let mut n = *used.get(stem).unwrap_or(&0);
    while used.contains_key(&candidate) {
        n += 1;
        candidate = format!("{stem}_{}", n + 1);
    }
    used.insert(stem.to_string(), n);
    used.entry(candidate.clone()).or_insert(0);
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_made_unique_in_order() {
        let mut used = std::collections::HashMap::new();
        let got: Vec<String> =
            ["img", "img", "cat", "img", "img_2", "cat"].iter().map(|s| unique_stem(&mut used, s)).collect();
        assert_eq!(got, ["img", "img_2", "cat", "img_3", "img_2_2", "cat_2"]);
    }

    #[test]
    fn replaces_a_planted_link_instead_of_following_it() {
        let dir = std::env::temp_dir().join(format!("gradcam-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, "keep me").unwrap();
        let out = dir.join("out.png");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        write_atomic(&out, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        // A failed write leaves the old file and no temporary behind.
        let failed = write_atomic(&out, |_| Err(std::io::Error::other("disk full")));
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().map(|e| e.file_name().to_string_lossy().ends_with(".tmp")).unwrap_or(false));
        assert_eq!(leftovers.count(), 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
