//! Block layouts as plain-old-data structs, so callers can read quantized data without `unsafe`
//! (`bytemuck::cast_slice::<u8, BlockQ4K>(bytes)`). Every field is a byte array, so the structs
//! have alignment 1 and cast from any byte slice; f16 fields are little-endian IEEE half bits.

use bytemuck::{Pod, Zeroable};

use crate::common::f16_bits_to_f32;

macro_rules! block {
    ($(#[$doc:meta])* $name:ident, $size:expr, { $($(#[$fdoc:meta])* $field:ident : [u8; $n:expr]),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
        pub struct $name { $($(#[$fdoc])* pub $field: [u8; $n]),* }
        const _: () = assert!(std::mem::size_of::<$name>() == $size);
    };
}

block!(/** Q4_0: 32 weights, 4 bits each, one scale. */ BlockQ4_0, 18, { /** scale (f16) */ d: [u8; 2], /** nibbles: low = j, high = j+16 */ qs: [u8; 16] });
block!(/** Q4_1: 32 weights, 4 bits, scale and minimum. */ BlockQ4_1, 20, { /** scale (f16) */ d: [u8; 2], /** minimum (f16) */ m: [u8; 2], /** nibbles */ qs: [u8; 16] });
block!(/** Q5_0: 32 weights, 5 bits, one scale. */ BlockQ5_0, 22, { /** scale (f16) */ d: [u8; 2], /** fifth bits (LE u32) */ qh: [u8; 4], /** low nibbles */ qs: [u8; 16] });
block!(/** Q5_1: 32 weights, 5 bits, scale and minimum. */ BlockQ5_1, 24, { /** scale (f16) */ d: [u8; 2], /** minimum (f16) */ m: [u8; 2], /** fifth bits (LE u32) */ qh: [u8; 4], /** low nibbles */ qs: [u8; 16] });
block!(/** Q8_0: 32 weights, 8 bits, one scale. */ BlockQ8_0, 34, { /** scale (f16) */ d: [u8; 2], /** signed quants */ qs: [u8; 32] });
block!(/** Q8_1: Q8_0 plus the scaled sum of the quants. */ BlockQ8_1, 36, { /** scale (f16) */ d: [u8; 2], /** d·Σq (f16) */ s: [u8; 2], /** signed quants */ qs: [u8; 32] });
block!(/** Q2_K: 256 weights in 16 groups, 2 bits, 4-bit scales and minimums. */ BlockQ2K, 84, { /** low nibble scale, high nibble min */ scales: [u8; 16], /** 2-bit quants */ qs: [u8; 64], /** super-scale (f16) */ d: [u8; 2], /** super-min (f16) */ dmin: [u8; 2] });
block!(/** Q3_K: 256 weights in 16 groups, 3 bits, 6-bit scales. */ BlockQ3K, 110, { /** high bits */ hmask: [u8; 32], /** low 2 bits */ qs: [u8; 64], /** 16 packed 6-bit scales */ scales: [u8; 12], /** super-scale (f16) */ d: [u8; 2] });
block!(/** Q4_K: 256 weights in 8 groups, 4 bits, 6-bit scales and minimums. */ BlockQ4K, 144, { /** super-scale (f16) */ d: [u8; 2], /** super-min (f16) */ dmin: [u8; 2], /** packed 6-bit scales and mins */ scales: [u8; 12], /** nibbles */ qs: [u8; 128] });
block!(/** Q5_K: 256 weights in 8 groups, 5 bits, 6-bit scales and minimums. */ BlockQ5K, 176, { /** super-scale (f16) */ d: [u8; 2], /** super-min (f16) */ dmin: [u8; 2], /** packed 6-bit scales and mins */ scales: [u8; 12], /** fifth bits */ qh: [u8; 32], /** low nibbles */ qs: [u8; 128] });
block!(/** Q6_K: 256 weights in 16 groups, 6 bits, 8-bit scales. */ BlockQ6K, 210, { /** low 4 bits */ ql: [u8; 128], /** high 2 bits */ qh: [u8; 64], /** signed scales */ scales: [u8; 16], /** super-scale (f16) */ d: [u8; 2] });
block!(/** Q8_K: 256 weights, 8 bits, f32 scale and group sums (an intermediate type). */ BlockQ8K, 292, { /** scale (f32) */ d: [u8; 4], /** signed quants */ qs: [u8; 256], /** sums of 16 quants (i16) */ bsums: [u8; 32] });
block!(/** IQ4_NL: 32 weights as 4-bit indices into a non-linear table. */ BlockIQ4NL, 18, { /** scale (f16) */ d: [u8; 2], /** indices */ qs: [u8; 16] });
block!(/** IQ4_XS: 256 weights, non-linear 4-bit indices, 6-bit group scales. */ BlockIQ4XS, 136, { /** super-scale (f16) */ d: [u8; 2], /** high scale bits (LE u16) */ scales_h: [u8; 2], /** low scale nibbles */ scales_l: [u8; 4], /** indices */ qs: [u8; 128] });
block!(/** TQ1_0: 256 ternary weights, five per byte. */ BlockTQ1_0, 54, { /** base-3 packed trits */ qs: [u8; 48], /** the last 16 trits */ qh: [u8; 4], /** scale (f16) */ d: [u8; 2] });
block!(/** TQ2_0: 256 ternary weights, four per byte. */ BlockTQ2_0, 66, { /** 2-bit trits */ qs: [u8; 64], /** scale (f16) */ d: [u8; 2] });
block!(/** MXFP4: 32 E2M1 weights sharing one E8M0 exponent. */ BlockMXFP4, 17, { /** shared exponent (E8M0; the block's values are codes times 2^(e-128)) */ e: [u8; 1], /** 4-bit codes: low = j, high = j+16 */ qs: [u8; 16] });

/// Reads a little-endian f16 field as f32.
pub fn f16_field(bytes: [u8; 2]) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes(bytes))
}
