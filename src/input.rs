//! Model inputs: images (any format the `image` crate decodes) resized and normalized like torchvision, or `.npy`
//! tensors that are already preprocessed.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use ndarray::{Array3, Axis};
use std::path::Path;

/// Largest width or height accepted from an image header (a 100000×100000 claim is refused before decoding).
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// Largest decoder allocation.
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// Per-channel normalization `(x − mean) / std` of [0, 1] RGB pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// torchvision's ImageNet statistics.
    pub fn imagenet() -> Self {
        Normalization { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }

    /// Normalizes a `[N, 3, H, W]` tensor of [0, 1] pixels.
    pub fn apply(&self, pixels: &Tensor<f32>) -> Tensor<f32> {
        let mut x = pixels.clone();
        for (c, mut plane) in x.axis_iter_mut(Axis(1)).enumerate() {
            let (m, s) = (self.mean[c % 3], self.std[c % 3]);
            plane.mapv_inplace(|v| (v - m) / s);
        }
        x
    }
}

/// A decoded image and the model input made from it.
#[derive(Debug)]
pub struct LoadedImage {
    /// The original pixels, for overlays at full resolution.
    pub original: image::RgbImage,
    /// Resized RGB in [0, 1], `[1, 3, H, W]` (before normalization).
    pub pixels: Tensor<f32>,
}

/// Images larger than this many pixels are refused unless the caller allows more (64 Mpx: a decoded RGB image of
/// 192 MB; phone and DSLR photos are 12–50 Mpx).
pub const DEFAULT_MAX_PIXELS: u64 = 64 << 20;

/// Decodes an image file (alpha dropped, grayscale expanded) with bounded memory, at most
/// [`DEFAULT_MAX_PIXELS`].
pub fn decode_image(path: &Path) -> Result<image::RgbImage> {
    decode_image_limited(path, DEFAULT_MAX_PIXELS)
}

/// [`decode_image`] with a pixel limit, checked from the header before anything is decoded. A JPEG whose scan
/// data does not end with an end-of-image marker (a truncated file, which decoders fill with grey) is an error.
pub fn decode_image_limited(path: &Path, max_pixels: u64) -> Result<image::RgbImage> {
    let shown = path.display().to_string();
    let err = |why: String| Error::Image { path: shown.clone(), why };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() > MAX_IMAGE_BYTES {
        return Err(err(format!("a file of {} bytes is larger than any image accepted", meta.len())));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let reader = || -> Result<image::ImageReader<std::io::Cursor<&[u8]>>> {
        let r = image::ImageReader::new(std::io::Cursor::new(&bytes[..]));
        r.with_guessed_format().map_err(|e| err(e.to_string()))
    };
    let header = reader()?;
    let format = header.format().ok_or_else(|| err("not an image file in a known format".into()))?;
    let (w, h) = header.into_dimensions().map_err(|e| err(e.to_string()))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(err(format!(
            "image of {w}×{h} = {:.1} Mpx is above the limit of {:.1} Mpx (--max-pixels)",
            pixels as f64 / (1u64 << 20) as f64,
            max_pixels as f64 / (1u64 << 20) as f64
        )));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(&bytes) {
        return Err(err("truncated JPEG: no end-of-image marker after the scan data".into()));
    }
    let mut decoder = reader()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    decoder.limits(limits);
    let img = decoder.decode().map_err(|e| err(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(err(format!("empty image ({}×{})", img.width(), img.height())));
    }
    Ok(img.to_rgb8())
}

/// Whether a JPEG stream has an end-of-image marker (FF D9) after its last start-of-scan (FF DA).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|m| m == [0xFF, 0xDA]);
    last_scan.is_some_and(|at| bytes[at..].windows(2).any(|m| m == [0xFF, 0xD9]))
}

/// Loads an image and resizes it to `size = [H, W]` (antialiased bilinear).
pub fn load_image(path: &Path, size: [usize; 2]) -> Result<LoadedImage> {
    load_image_limited(path, size, DEFAULT_MAX_PIXELS)
}

/// [`load_image`] with a pixel limit (see [`decode_image_limited`]).
pub fn load_image_limited(path: &Path, size: [usize; 2], max_pixels: u64) -> Result<LoadedImage> {
    let original = decode_image_limited(path, max_pixels)?;
    let pixels = image_to_tensor(&original, size);
    Ok(LoadedImage { original, pixels })
}

/// `[1, 3, H, W]` in [0, 1], resized from an RGB image (as [`resize_antialias`] of the image in [0, 1]).
///
/// The horizontal pass reads the 8-bit pixels directly, so a large photo never exists as a full-resolution f32
/// copy (a 64 Mpx image would take 768 MB): only `H × out_W` values are held between the passes.
pub fn image_to_tensor(img: &image::RgbImage, size: [usize; 2]) -> Tensor<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let wx = axis_weights(w, size[1]);
    let raw = img.as_raw();
    let mut tmp = Array3::<f32>::zeros((3, h, size[1]));
    for y in 0..h {
        let row = &raw[y * w * 3..(y + 1) * w * 3];
        for (ox, (lo, ws)) in wx.iter().enumerate() {
            for c in 0..3 {
                let s: f64 =
                    ws.iter().enumerate().map(|(k, &wv)| wv * (row[(lo + k) * 3 + c] as f32 / 255.0) as f64).sum();
                tmp[[c, y, ox]] = s as f32;
            }
        }
    }
    vertical_pass(&tmp, size[0]).insert_axis(Axis(0)).into_dyn()
}

/// Interpolation weights of one axis: for each output index, the first input index and the weights that follow.
/// PIL's / PyTorch's `antialias=True` bilinear filter: a triangle stretched by the downscaling factor, so every
/// input pixel contributes when shrinking.
fn axis_weights(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    let support = if scale >= 1.0 { scale } else { 1.0 };
    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..output)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(input as i64).max(lo as i64) as usize;
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| {
                    let x = ((j as f64 - center + 0.5) * inv).abs();
                    if x < 1.0 {
                        1.0 - x
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = w.iter().sum();
            if total > 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (lo, w)
        })
        .collect()
}

/// Antialiased bilinear resize of a `[C, H, W]` array (equals `F.interpolate(..., mode="bilinear",
/// align_corners=False, antialias=True)`; without antialiasing when enlarging).
pub fn resize_antialias(x: &Array3<f32>, out_h: usize, out_w: usize) -> Array3<f32> {
    let (c, h, w) = x.dim();
    let wx = axis_weights(w, out_w);
    let mut tmp = Array3::<f32>::zeros((c, h, out_w));
    for ch in 0..c {
        for y in 0..h {
            for (ox, (lo, ws)) in wx.iter().enumerate() {
                let s: f64 = ws.iter().enumerate().map(|(k, &wv)| wv * x[[ch, y, lo + k]] as f64).sum();
                tmp[[ch, y, ox]] = s as f32;
            }
        }
    }
    vertical_pass(&tmp, out_h)
}

/// The vertical half of [`resize_antialias`]: `[C, H, W]` → `[C, out_h, W]`.
fn vertical_pass(tmp: &Array3<f32>, out_h: usize) -> Array3<f32> {
    let (c, h, out_w) = tmp.dim();
    let wy = axis_weights(h, out_h);
    let mut out = Array3::<f32>::zeros((c, out_h, out_w));
    for ch in 0..c {
        for (oy, (lo, ws)) in wy.iter().enumerate() {
            for ox in 0..out_w {
                let s: f64 = ws.iter().enumerate().map(|(k, &wv)| wv * tmp[[ch, lo + k, ox]] as f64).sum();
                out[[ch, oy, ox]] = s as f32;
            }
        }
    }
    out
}

/// Opens `path` for reading if it is a regular file (symbolic links followed). Checked before opening: opening a
/// FIFO blocks until a writer comes, so a FIFO given as a model, an input or external data would hang the run.
pub fn open_regular(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    std::fs::File::open(path)
}

/// Reads a `.npy` tensor (f32, NCHW, already preprocessed).
pub fn load_npy(path: &Path) -> Result<Tensor<f32>> {
    let t = read_npy_f32(path)?;
    if t.ndim() != 4 {
        let why = format!("expected an NCHW tensor, got shape {:?}", t.shape());
        return Err(Error::Npy { path: path.display().to_string(), why });
    }
    Ok(t)
}

/// Reads an f32 `.npy` array of any rank — after checking that the file holds exactly the bytes its header claims,
/// so a small file claiming a huge shape is an error rather than a huge allocation.
pub fn read_npy_f32(path: &Path) -> Result<Tensor<f32>> {
    let shown = path.display().to_string();
    let npy_err = |why: String| Error::Npy { path: shown.clone(), why };
    let file = open_regular(path).map_err(|e| Error::Io { path: shown.clone(), why: e.to_string() })?;
    let meta = file.metadata().map_err(|e| Error::Io { path: shown.clone(), why: e.to_string() })?;
    if !meta.is_file() {
        return Err(npy_err("not a regular file".into()));
    }
    let mut reader = std::io::BufReader::new(file);
    let (header_len, shape) = npy_header(&mut reader).map_err(npy_err)?;
    let data = shape
        .iter()
        .try_fold(4u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| npy_err(format!("header claims shape {shape:?}, beyond any file")))?;
    if header_len.checked_add(data) != Some(meta.len()) {
        let why = format!("header claims shape {shape:?} ({data} bytes of f32), the file holds {} bytes", meta.len());
        return Err(npy_err(why));
    }
    use std::io::Seek;
    reader.rewind().map_err(|e| Error::Io { path: shown.clone(), why: e.to_string() })?;
    let t: Tensor<f32> = ndarray_npy::ReadNpyExt::read_npy(reader)
        .map_err(|e| npy_err(format!("{e} (expected a little-endian f32 array)")))?;
    Ok(t)
}

/// Whether `path` names a `.npy` tensor file (by its extension, any case) rather than an image.
pub fn is_npy(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// The model-input shape a file implies, from its header alone: a `.npy` array's shape, or `[1, 3, H, W]` for an
/// image of H × W pixels (used to size an ONNX model whose input sizes are symbolic).
pub fn input_shape_of(path: &Path) -> Result<Vec<usize>> {
    let shown = path.display().to_string();
    if is_npy(path) {
        let file = open_regular(path).map_err(|e| Error::Io { path: shown.clone(), why: e.to_string() })?;
        let (_, shape) =
            npy_header(&mut std::io::BufReader::new(file)).map_err(|why| Error::Npy { path: shown.clone(), why })?;
        return shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| Error::Npy { path: shown.clone(), why: format!("size {d}") }))
            .collect();
    }
    let err = |why: String| Error::Image { path: shown.clone(), why };
    let reader = image::ImageReader::open(path).map_err(|e| err(e.to_string()))?;
    let (w, h) = reader
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?
        .into_dimensions()
        .map_err(|e| err(e.to_string()))?;
    Ok(vec![1, 3, h as usize, w as usize])
}

/// Length of a `.npy` preamble and header, and the shape the header declares (format versions 1–3).
fn npy_header(r: &mut impl std::io::Read) -> std::result::Result<(u64, Vec<u64>), String> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre).map_err(|_| "not a .npy file (too short)".to_string())?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no NUMPY magic)".into());
    }
    let (len_bytes, len) = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(|_| "truncated .npy header".to_string())?;
            (2u64, u64::from(u16::from_le_bytes(b)))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|_| "truncated .npy header".to_string())?;
            (4u64, u64::from(u32::from_le_bytes(b)))
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    // Real headers are a few hundred bytes; anything far larger is not one.
    if len > 1 << 20 {
        return Err(format!(".npy header of {len} bytes"));
    }
    let mut header = vec![0u8; len as usize];
    r.read_exact(&mut header).map_err(|_| "truncated .npy header".to_string())?;
    let header = String::from_utf8_lossy(&header);
    // A real header is one flat dictionary whose only nested value is the shape tuple. Anything else is refused
    // here, before the full parser sees it: nested braces made that parser backtrack for seconds on a 148-byte file
    // (found by the npy_read fuzzer).
    let count = |c: char| header.matches(c).count();
    if count('{') != 1 || count('}') != 1 || count('(') > 1 || count(')') > 1 || count('[') > 0 {
        return Err("the .npy header is not a plain {'descr', 'fortran_order', 'shape'} dictionary".into());
    }
    let after = header.split("'shape'").nth(1).ok_or("the .npy header has no shape")?;
    let open = after.find('(').ok_or("the .npy header has no shape tuple")?;
    let close = after[open..].find(')').ok_or("the .npy header has no shape tuple")? + open;
    let shape = after[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<u64>().map_err(|_| format!("shape entry '{d}' in the .npy header")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((8 + len_bytes + len, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn image_to_tensor_equals_resizing_the_image_in_f32() {
        // Shrinking, enlarging and a mix, on odd sizes: the direct 8-bit pass gives the same bits.
        for (w, h, size) in [(37u32, 23u32, [7, 5]), (5, 9, [11, 13]), (40, 3, [6, 8])] {
            let img =
                image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 + y) as u8, (y * 11) as u8, (x ^ y) as u8]));
            let mut chw = Array3::<f32>::zeros((3, h as usize, w as usize));
            for (x, y, p) in img.enumerate_pixels() {
                for c in 0..3 {
                    chw[[c, y as usize, x as usize]] = p[c] as f32 / 255.0;
                }
            }
            let want = resize_antialias(&chw, size[0], size[1]).insert_axis(Axis(0)).into_dyn();
            assert_eq!(image_to_tensor(&img, size), want, "{w}x{h} → {size:?}");
        }
    }

    #[test]
    fn weights_sum_to_one_and_identity_resize_is_exact() {
        for (i, o) in [(451, 224), (300, 224), (7, 224), (224, 224)] {
            for (_, w) in axis_weights(i, o) {
                assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
        let x = Array3::from_shape_fn((1, 5, 4), |(_, y, x)| (y * 4 + x) as f32);
        assert_eq!(resize_antialias(&x, 5, 4), x);
    }

    #[test]
    fn normalization_is_per_channel() {
        let px = Tensor::from_elem(IxDyn(&[1, 3, 1, 1]), 0.5f32);
        let x = Normalization::imagenet().apply(&px);
        assert!((x[[0, 0, 0, 0]] - (0.5 - 0.485) / 0.229).abs() < 1e-6);
        assert!((x[[0, 2, 0, 0]] - (0.5 - 0.406) / 0.225).abs() < 1e-6);
    }
}
