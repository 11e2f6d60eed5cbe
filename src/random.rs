//! SplitMix64 (Steele, Lea and Flood, 2014): the one pseudo-random generator of the library — seeded, portable and
//! reproducible bit for bit in numpy, which the fixture scripts rely on. Used for PGD's random start, the synthetic
//! weights and the tests' data.

/// The golden-ratio increment of the state.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a well-mixed 64-bit value of any state.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 24 high bits of `z` as a value in `[0, 1)`: exact in f32.
pub fn unit24(z: u64) -> f64 {
    (z >> 40) as f64 / (1u64 << 24) as f64
}

/// Element `index` of the stream seeded `seed`, without stepping through the ones before it.
pub fn at(seed: u64, index: u64) -> u64 {
    mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// A sequential SplitMix64 stream.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference sequence of SplitMix64 seeded 1234567 (from the authors' C code, as quoted by Vigna's
    /// `splitmix64.c` test vectors).
    #[test]
    fn matches_the_reference_sequence() {
        let mut r = SplitMix64::new(1234567);
        let want = [6457827717110365317u64, 3203168211198807973, 9817491932198370423, 4593380528125082431];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
    }

    #[test]
    fn indexed_access_equals_the_stream() {
        let mut r = SplitMix64::new(42);
        for i in 0..10 {
            assert_eq!(at(42, i), r.next_u64());
        }
    }
}
