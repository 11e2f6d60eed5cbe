//! Pixel values to bytes.

/// `v.round().clamp(0.0, 255.0) as u8` — half away from zero, NaN to 0 — without `round`'s library call: the
/// baseline x86-64 target has no rounding instruction, and three calls per pixel took 6 % of `gradcam explain`'s
/// time on a folder of photos. Truncation is one instruction, and `c - t` is exact below 2²³.
pub fn to_byte(v: f32) -> u8 {
    let c = v.clamp(0.0, 255.0);
    let t = c as u8;
    if c - t as f32 >= 0.5 {
        t + 1
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(v: f32) -> u8 {
        v.round().clamp(0.0, 255.0) as u8
    }

    #[test]
    fn equals_round_then_clamp() {
        let mut values = vec![f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, f32::MAX, f32::MIN];
        // Every 1/4096 from -2 to 258, and the neighbours of every half and whole number there.
        values.extend((-2 * 4096..258 * 4096).map(|i| i as f32 / 4096.0));
        for i in -4..520 {
            let x = i as f32 / 2.0;
            values.extend([x, x.next_up(), x.next_down(), x.next_up().next_up(), x.next_down().next_down()]);
        }
        for v in values {
            assert_eq!(to_byte(v), reference(v), "{v} ({:#x})", v.to_bits());
        }
    }
}
