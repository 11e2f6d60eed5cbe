//! Corrupt weights and images give typed errors naming the file, key or shapes — no panic, no huge allocation.

mod common;

use gradcam::input::{decode_image, load_npy};
use gradcam::models::Weights;
use gradcam::{Arch, Error, Model};
use safetensors::{serialize, Dtype};
use std::path::PathBuf;

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradcam-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn bundled_bytes() -> Vec<u8> {
    std::fs::read(common::fixture("models/efficientnet_lite0.safetensors")).unwrap()
}

/// A safetensors file holding the given (key, dtype, shape) tensors filled with zeros.
fn safetensors_file(tensors: &[(&str, Dtype, Vec<usize>)]) -> Vec<u8> {
    let data: Vec<(String, Vec<u8>, Dtype, Vec<usize>)> = tensors
        .iter()
        .map(|(k, d, s)| (k.to_string(), vec![0u8; s.iter().product::<usize>() * d.bitsize() / 8], *d, s.clone()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(k, bytes, d, s)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), bytes).unwrap()))
        .collect();
    serialize(views, None).unwrap()
}

#[test]
fn truncated_safetensors_is_an_error() {
    let bytes = bundled_bytes();
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = Weights::from_safetensors(&bytes[..cut], "cut.safetensors").unwrap_err();
        assert!(matches!(err, Error::Safetensors { .. }), "{cut}: {err}");
        assert!(err.to_string().contains("cut.safetensors"));
    }
}

#[test]
fn header_claiming_absurd_sizes_is_an_error() {
    // An 8-byte header length of 2^62, then a header whose tensor claims 2^40 elements.
    let mut huge_len = (1u64 << 62).to_le_bytes().to_vec();
    huge_len.extend_from_slice(b"{}");
    assert!(Weights::from_safetensors(&huge_len, "x").is_err());
    let header = br#"{"w":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,4398046511104]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0; 16]);
    let err = Weights::from_safetensors(&file, "huge.safetensors").unwrap_err();
    assert!(matches!(err, Error::Safetensors { .. }), "{err}");
    // Not JSON at all.
    let mut garbage = 16u64.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 16]);
    assert!(Weights::from_safetensors(&garbage, "x").is_err());
}

#[test]
fn unsupported_dtype_names_the_key() {
    let file = safetensors_file(&[("fc.weight", Dtype::I64, vec![2, 2])]);
    let err = Weights::from_safetensors(&file, "ints.safetensors").unwrap_err();
    assert!(matches!(err, Error::WeightDtype { ref key, .. } if key == "fc.weight"), "{err}");
}

#[test]
fn wrong_shape_missing_and_extra_tensors_name_the_key_and_shapes() {
    // resnet18 with a wrong conv1 shape.
    let mut w = Weights::synthetic();
    let good = w.take("conv1.weight", &[64, 3, 7, 7], gradcam::models::Init::Weight { fan_in: 147 }).unwrap();
    assert_eq!(good.shape(), &[64, 3, 7, 7]);
    let file = safetensors_file(&[("conv1.weight", Dtype::F32, vec![64, 3, 3, 3])]);
    let err =
        Model::build(Arch::Resnet18, Weights::from_safetensors(&file, "r18.safetensors").unwrap(), [224, 224], 1000)
            .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::WeightShape { .. }), "{msg}");
    assert!(msg.contains("conv1.weight") && msg.contains("[64, 3, 3, 3]") && msg.contains("[64, 3, 7, 7]"), "{msg}");

    let file = safetensors_file(&[("conv1.weight", Dtype::F16, vec![64, 3, 7, 7])]);
    let err =
        Model::build(Arch::Resnet18, Weights::from_safetensors(&file, "r18.safetensors").unwrap(), [224, 224], 1000)
            .unwrap_err();
    assert!(matches!(err, Error::MissingWeight { ref key, .. } if key == "bn1.weight"), "{err}");

    // The bundled EfficientNet weights plus one stray tensor are rejected as not belonging to the architecture.
    let original = bundled_bytes();
    let st = safetensors::SafeTensors::deserialize(&original).unwrap().tensors();
    let stray = vec![0u8; 8];
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st;
    views.push(("extra.weight".into(), safetensors::tensor::TensorView::new(Dtype::F32, vec![2], &stray).unwrap()));
    let bytes = serialize(views, None).unwrap();
    let err = Model::build(Arch::EfficientnetLite0, Weights::from_safetensors(&bytes, "x").unwrap(), [224, 224], 1000)
        .unwrap_err();
    assert!(matches!(err, Error::UnexpectedWeights { .. }) && err.to_string().contains("extra.weight"), "{err}");
}

#[test]
fn bf16_and_f32_weights_load_with_their_values() {
    // bf16 1.0, -2.5, 0.15625 (exact in bf16) and f32 values with more bits than bf16 keeps.
    let a: Vec<u8> = [0x3F80u16, 0xC020, 0x3E20].iter().flat_map(|b| b.to_le_bytes()).collect();
    let b: Vec<u8> = [1.0f32, -0.1, 3.25, 1e-3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        ("a".to_string(), safetensors::tensor::TensorView::new(Dtype::BF16, vec![3], &a).unwrap()),
        ("b".to_string(), safetensors::tensor::TensorView::new(Dtype::F32, vec![2, 2], &b).unwrap()),
    ];
    let file = serialize(views, None).unwrap();
    let mut w = Weights::from_safetensors(&file, "x").unwrap();
    let a = w.take("a", &[3], gradcam::models::Init::BnVar).unwrap().to_f32();
    assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![1.0, -2.5, 0.15625]);
    let b = w.take("b", &[2, 2], gradcam::models::Init::BnVar).unwrap().to_f32();
    assert_eq!(b.shape(), &[2, 2]);
    assert_eq!(b.iter().copied().collect::<Vec<_>>(), vec![1.0, -0.1, 3.25, 1e-3]);
    w.finish("test").unwrap();
}

/// A PNG file consisting of the signature and an IHDR chunk claiming `w × h` pixels.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&chunk);
    png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    png
}

#[test]
fn bad_images_are_errors_naming_the_file() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not_an_image.png", b"hello, I am text".to_vec()),
        ("empty.png", Vec::new()),
        ("zero.png", png_header(0, 0)),
        ("huge.png", png_header(100_000, 100_000)),
        ("truncated.png", std::fs::read(common::fixture("images/chelsea.png")).unwrap()[..5000].to_vec()),
    ];
    for (name, bytes) in cases {
        let path = temp(name, &bytes);
        let err = decode_image(&path).unwrap_err();
        assert!(matches!(err, Error::Image { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    let err = decode_image(std::path::Path::new("/nonexistent/cat.png")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cat.png"));
}

#[test]
fn bad_npy_inputs_are_errors() {
    let path = temp("garbage.npy", b"\x93NUMPY garbage");
    assert!(matches!(load_npy(&path).unwrap_err(), Error::Npy { .. }));
    let path = common::fixture("engine/conv_basic/b.npy");
    let err = load_npy(&path).unwrap_err();
    assert!(err.to_string().contains("NCHW"), "{err}");
}
