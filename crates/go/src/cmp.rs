//! Go's `cmp` package.

/// Go's `cmp.Or`: the first of `values` that is not the zero value (`T::default()`), else the zero
/// value. For floats, `-0.0` counts as zero and NaN does not, as with Go's `==`.
pub fn or<T: PartialEq + Default + Copy>(values: &[T]) -> T {
    let zero = T::default();
    values.iter().copied().find(|v| *v != zero).unwrap_or(zero)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_non_zero() {
        assert_eq!(or(&[0u32, 3, 4]), 3);
        assert_eq!(or(&[5u32, 3]), 5);
        assert_eq!(or::<u32>(&[0, 0]), 0);
        assert_eq!(or(&[-0.0f32, 1.0]), 1.0);
        assert!(or(&[f32::NAN, 1.0]).is_nan());
    }
}
