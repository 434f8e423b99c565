//! Go's built-in functions.

/// Go's built-in `max` on two `float64`s: NaN wins, otherwise the larger (signed zeros as
/// `f64::max` orders them).
pub fn max_f64(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}
