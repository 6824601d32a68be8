//! The special functions the customer-base models need: the log-gamma
//! function (libm's) and Gauss's hypergeometric function 2F1.

pub use libm::lgamma as ln_gamma;

/// Terms summed at most; the callers' series converge in far fewer.
const MAX_TERMS: usize = 100_000;

/// Gauss's hypergeometric function 2F1(a, b; c; z) for 0 <= z < 1, by its
/// power series, which the callers arrange to converge quickly (see
/// [`super::bgnbd::BgNbd::expected_purchases`]). NaN where it does not
/// converge.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if !(0.0..1.0).contains(&z) {
        return f64::NAN;
    }
    let (mut term, mut sum) = (1.0, 1.0);
    for n in 0..MAX_TERMS {
        let n = n as f64;
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() <= f64::EPSILON * sum.abs() {
            return sum;
        }
    }
    f64::NAN
}
