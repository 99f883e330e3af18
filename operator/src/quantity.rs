//! Byte sizes written as Kubernetes quantities (`20Gi`, `500M`, `1.5Ti`), the
//! subset that makes sense for volumes and rates.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// Bytes in `q`, rounded up; `None` for negative, fractional-suffix (`m`),
/// exponent forms or anything that is not a quantity.
pub fn to_bytes(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 9 {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut bytes = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let scale = 10u128.pow(u32::try_from(fraction.len()).ok()?);
        let part = (digits * u128::from(multiplier)).div_ceil(scale);
        bytes = bytes.checked_add(u64::try_from(part).ok()?)?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Option<u64> {
        to_bytes(&Quantity(s.to_owned()))
    }

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(bytes("20Gi"), Some(20 * GIB));
        assert_eq!(bytes("512Mi"), Some(512 << 20));
        assert_eq!(bytes("1Ti"), Some(1 << 40));
        assert_eq!(bytes("5G"), Some(5_000_000_000));
        assert_eq!(bytes("123"), Some(123));
        assert_eq!(bytes("100k"), Some(100_000));
    }

    #[test]
    fn fractions_round_up_to_whole_bytes() {
        assert_eq!(bytes("1.5Gi"), Some(GIB + GIB / 2));
        assert_eq!(bytes("0.1Ki"), Some(103));
        assert_eq!(bytes(".5Ki"), Some(512));
    }

    #[test]
    fn non_sizes_are_refused() {
        for s in [
            "",
            "Gi",
            "-1Gi",
            "100m",
            "1e3",
            "1.2.3Gi",
            "ten",
            "1 Gi",
            "1gi",
            "99999999999Ei",
        ] {
            assert_eq!(bytes(s), None, "{s:?}");
        }
    }
}
