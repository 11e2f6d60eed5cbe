//! Colormaps for heat maps.

use crate::error::{Error, Result};

/// A map from [0, 1] to RGB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Colormap {
    /// Blue → cyan → yellow → red (the Grad-CAM paper's and pytorch-grad-cam's default).
    #[default]
    Jet,
    /// Google's Turbo: like jet, but perceptually smoother.
    Turbo,
    /// Matplotlib's perceptually uniform, colour-blind-friendly map.
    Viridis,
}

/// Viridis sampled at 0, 1/8, …, 7/8 (matplotlib's `viridis` at those points); 1 is [`VIRIDIS_END`].
const VIRIDIS: [[f32; 3]; 8] = [
    [0.267_004, 0.004_874, 0.329_415],
    [0.282_623, 0.140_926, 0.457_517],
    [0.253_935, 0.265_254, 0.529_983],
    [0.206_756, 0.371_758, 0.553_117],
    [0.127_568, 0.566_949, 0.550_556],
    [0.134_692, 0.658_636, 0.517_649],
    [0.266_941, 0.748_751, 0.440_573],
    [0.477_504, 0.821_444, 0.318_195],
];
const VIRIDIS_END: [f32; 3] = [0.993_248, 0.906_157, 0.143_936];

impl Colormap {
    /// Parses `jet`, `turbo` or `viridis`.
    pub fn parse(name: &str) -> Result<Colormap> {
        match name {
            "jet" => Ok(Colormap::Jet),
            "turbo" => Ok(Colormap::Turbo),
            "viridis" => Ok(Colormap::Viridis),
            _ => Err(Error::InvalidArgument {
                name: "colormap",
                why: format!("unknown colormap '{name}' (known: jet, turbo, viridis)"),
            }),
        }
    }

    /// The colour of `t ∈ [0, 1]` (clamped; NaN maps to 0).
    pub fn rgb(self, t: f32) -> [f32; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        match self {
            Colormap::Jet => {
                let ramp = |c: f32| (1.5 - (4.0 * t - c).abs()).clamp(0.0, 1.0);
                [ramp(3.0), ramp(2.0), ramp(1.0)]
            }
            Colormap::Turbo => {
                // Polynomial fit of Turbo (Mikhailov, 2019).
                let (t2, t3, t4, t5) = (t * t, t * t * t, t.powi(4), t.powi(5));
                let r = 0.135_721_38 + 4.615_392_6 * t - 42.660_324 * t2 + 132.131_08 * t3 - 152.942_4 * t4
                    + 59.286_38 * t5;
                let g = 0.091_402_61 + 2.194_188_4 * t + 4.842_966_6 * t2 - 14.185_033 * t3
                    + 4.277_298_6 * t4
                    + 2.829_566 * t5;
                let b =
                    0.106_673_3 + 12.641_946 * t - 60.582_05 * t2 + 110.362_77 * t3 - 89.903_11 * t4 + 27.348_25 * t5;
                [r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0)]
            }
            Colormap::Viridis => {
                let x = t * 8.0;
                let i = (x.floor() as usize).min(7);
                let hi = VIRIDIS.get(i + 1).copied().unwrap_or(VIRIDIS_END);
                lerp(VIRIDIS[i], hi, x - i as f32)
            }
        }
    }
}

fn lerp(a: [f32; 3], b: [f32; 3], f: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_the_expected_colours() {
        let j0 = Colormap::Jet.rgb(0.0);
        let j1 = Colormap::Jet.rgb(1.0);
        assert!(j0[2] > 0.4 && j0[0] == 0.0, "jet starts dark blue: {j0:?}");
        assert!(j1[0] > 0.4 && j1[2] == 0.0, "jet ends dark red: {j1:?}");
        let v1 = Colormap::Viridis.rgb(1.0);
        assert!((v1[0] - 0.993).abs() < 1e-3 && (v1[2] - 0.144).abs() < 1e-3);
        let t = Colormap::Turbo.rgb(0.5);
        assert!(t[1] > 0.8, "turbo is green-ish in the middle: {t:?}");
        assert!(Colormap::parse("magma").is_err());
    }
}
