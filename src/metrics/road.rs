//! ROAD (Rong et al., ICML 2022: RemOve And Debias) as pytorch-grad-cam 1.5.7 computes it: the pixels at or above a
//! percentile of the map (MoRF: most relevant first) or of `1 − map` (LeRF) are removed and filled in by *noisy
//! linear imputation* — each removed pixel the weighted mean of its 8 neighbours (1/6 straight, 1/12 diagonal),
//! solved jointly as a sparse linear system, plus 0.01·N(0, 1) noise — and the metric is the score after minus the
//! score before, averaged over the percentiles (pytorch-grad-cam's defaults: 10, 20, …, 90). `combined` is
//! `(LeRF − MoRF) / 2`: high when removing what the map ranks low costs little and removing what it ranks high costs
//! much.
//!
//! pytorch-grad-cam solves the system directly (scipy's `spsolve`); here it is solved by conjugate gradients in f64
//! (the system is symmetric and, negated, positive definite wherever the removed pixels touch a kept one) to a
//! relative residual of 1e-10. The noise is seeded (stream `road`, element `c·n + k` for channel c of the k-th
//! removed pixel in row-major order), so a run is reproducible.

use super::{check_map, Scorer};
use crate::error::{Error, Result};
use crate::models::weights::standard_normal;
use ndarray::{Array2, Array3, ArrayView3};

/// pytorch-grad-cam's percentiles for the averaged ROAD metrics.
pub const ROAD_PERCENTILES: [u32; 9] = [10, 20, 30, 40, 50, 60, 70, 80, 90];

/// The imputation's noise level (absolute, in the model's input space).
const NOISE: f32 = 0.01;
pub(crate) const NOISE_STREAM: &str = "road";

/// The neighbours of a pixel and their weights.
const NEIGHBOURS: [((isize, isize), f64); 8] = [
    ((1, 1), 1.0 / 12.0),
    ((0, 1), 1.0 / 6.0),
    ((-1, 1), 1.0 / 12.0),
    ((1, -1), 1.0 / 12.0),
    ((0, -1), 1.0 / 6.0),
    ((-1, -1), 1.0 / 12.0),
    ((1, 0), 1.0 / 6.0),
    ((-1, 0), 1.0 / 6.0),
];

/// ROAD scores of one image, class and map: per percentile, the score change when the most (least) relevant
/// pixels are removed, and the averages.
#[derive(Clone, Debug, PartialEq)]
pub struct Road {
    pub percentiles: Vec<u32>,
    pub morf: Vec<f32>,
    pub lerf: Vec<f32>,
    pub morf_mean: f32,
    pub lerf_mean: f32,
    /// `(lerf_mean − morf_mean) / 2` (pytorch-grad-cam's `ROADCombined`).
    pub combined: f32,
}

/// numpy's `percentile` (linear interpolation between the closest ranks).
fn percentile(values: &[f32], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let pos = p / 100.0 * (v.len() - 1) as f64;
    let (lo, t) = (pos.floor() as usize, pos - pos.floor());
    let hi = (lo + 1).min(v.len() - 1);
    let (a, b) = (v[lo], v[hi]);
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// Pixels kept (`true`) when those at or above the `p`-th percentile of `ranking` are removed.
fn kept(ranking: &Array2<f32>, p: u32) -> Vec<bool> {
    let flat: Vec<f32> = ranking.iter().copied().collect();
    let threshold = percentile(&flat, p as f64) as f32;
    flat.iter().map(|&v| v < threshold).collect()
}

/// Noisy linear imputation of the pixels not `kept` in `image` `[C, H, W]`.
pub(crate) fn impute(image: ArrayView3<'_, f32>, kept: &[bool]) -> Result<Array3<f32>> {
    let (c, h, w) = image.dim();
    let missing: Vec<usize> = (0..h * w).filter(|&p| !kept[p]).collect();
    let n = missing.len();
    let mut out = image.to_owned();
    if n == 0 {
        return Ok(out);
    }
    let mut var = vec![usize::MAX; h * w];
    for (k, &p) in missing.iter().enumerate() {
        var[p] = k;
    }
    // −A as rows of (column, weight) and its diagonal; b per channel.
    let mut diag = vec![1.0f64; n];
    let mut links: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    let mut rhs = vec![vec![0.0f64; n]; c];
    for (k, &p) in missing.iter().enumerate() {
        let (y, x) = ((p / w) as isize, (p % w) as isize);
        for &((dy, dx), weight) in &NEIGHBOURS {
            let (ny, nx) = (y + dy, x + dx);
            if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                diag[k] -= weight;
                continue;
            }
            let q = ny as usize * w + nx as usize;
            if kept[q] {
                for (ch, b) in rhs.iter_mut().enumerate() {
                    b[k] += weight * image[[ch, ny as usize, nx as usize]] as f64;
                }
            } else {
                links[k].push((var[q], weight));
            }
        }
    }
    // Solve (D − W) x = b for each channel: D the diagonal, W the links between missing pixels.
    let apply = |x: &[f64], y: &mut [f64]| {
        for k in 0..n {
            let mut s = diag[k] * x[k];
            for &(j, wt) in &links[k] {
                s -= wt * x[j];
            }
            y[k] = s;
        }
    };
    for (ch, b) in rhs.iter().enumerate() {
        let x = conjugate_gradient(&apply, b, &diag).ok_or_else(|| Error::InvalidArgument {
            name: "map",
            why: "ROAD's imputation did not converge (no kept pixel to fill from?)".into(),
        })?;
        for (k, &p) in missing.iter().enumerate() {
            let noise = NOISE * standard_normal(NOISE_STREAM, ch * n + k);
            out[[ch, p / w, p % w]] = x[k] as f32 + noise;
        }
    }
    Ok(out)
}

/// Jacobi-preconditioned conjugate gradients for a symmetric positive definite operator; `None` if it fails to
/// reach a relative residual of 1e-10 (a singular system).
fn conjugate_gradient(apply: &impl Fn(&[f64], &mut [f64]), b: &[f64], diag: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let norm_b = b.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut x = vec![0.0; n];
    if norm_b == 0.0 {
        return Some(x);
    }
    let mut r = b.to_vec();
    let mut z: Vec<f64> = r.iter().zip(diag).map(|(r, d)| r / d).collect();
    let mut p = z.clone();
    let mut rz: f64 = r.iter().zip(&z).map(|(a, b)| a * b).sum();
    let mut ap = vec![0.0; n];
    for _ in 0..(10 * n).max(100) {
        apply(&p, &mut ap);
        let pap: f64 = p.iter().zip(&ap).map(|(a, b)| a * b).sum();
        if pap.is_nan() || pap <= 0.0 {
            return None;
        }
        let alpha = rz / pap;
        for k in 0..n {
            x[k] += alpha * p[k];
            r[k] -= alpha * ap[k];
        }
        if r.iter().map(|v| v * v).sum::<f64>().sqrt() <= 1e-10 * norm_b {
            return Some(x);
        }
        for k in 0..n {
            z[k] = r[k] / diag[k];
        }
        let rz_next: f64 = r.iter().zip(&z).map(|(a, b)| a * b).sum();
        let beta = rz_next / rz;
        rz = rz_next;
        for k in 0..n {
            p[k] = z[k] + beta * p[k];
        }
    }
    None
}

/// ROAD MoRF and LeRF at each percentile for `class`, `image` `[C, H, W]` and `map` `[H, W]`.
pub fn road(
    scorer: &Scorer<'_>,
    image: ArrayView3<'_, f32>,
    map: &Array2<f32>,
    class: usize,
    percentiles: &[u32],
) -> Result<Road> {
    check_map(image, map)?;
    if percentiles.is_empty() || percentiles.iter().any(|&p| p > 100) {
        return Err(Error::InvalidArgument {
            name: "percentiles",
            why: format!("ROAD percentiles must be in 0..=100, got {percentiles:?}"),
        });
    }
    let inverse = map.mapv(|v| 1.0 - v);
    let mut copies = vec![image.to_owned()];
    for ranking in [map, &inverse] {
        for &p in percentiles {
            copies.push(impute(image, &kept(ranking, p))?);
        }
    }
    let scores = scorer.scores(copies.len(), class, |k| copies[k].clone())?;
    let base = scores[0];
    let n = percentiles.len();
    let morf: Vec<f32> = scores[1..=n].iter().map(|s| s - base).collect();
    let lerf: Vec<f32> = scores[n + 1..].iter().map(|s| s - base).collect();
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (morf_mean, lerf_mean) = (mean(&morf), mean(&lerf));
    Ok(Road {
        percentiles: percentiles.to_vec(),
        morf,
        lerf,
        morf_mean,
        lerf_mean,
        combined: (lerf_mean - morf_mean) / 2.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [3.0f32, 1.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert!((percentile(&v, 50.0) - 2.5).abs() < 1e-12);
        assert!((percentile(&v, 10.0) - 1.3).abs() < 1e-12);
    }

    #[test]
    fn imputed_pixels_are_the_mean_of_their_neighbours_plus_noise() {
        // A linear ramp is its own neighbour mean inside the image: a removed interior block is filled back with
        // the ramp (up to the 0.01 noise).
        let img = Array3::from_shape_fn((1, 8, 8), |(_, y, x)| (2 * x + y) as f32);
        let mut keep = vec![true; 64];
        for y in 2..6 {
            for x in 3..6 {
                keep[y * 8 + x] = false;
            }
        }
        let out = impute(img.view(), &keep).unwrap();
        for y in 0..8 {
            for x in 0..8 {
                let err = (out[[0, y, x]] - img[[0, y, x]]).abs();
                assert!(err < 0.05, "({y}, {x}) off by {err}");
            }
        }
        assert!(out != img, "noise was added");
    }
}
