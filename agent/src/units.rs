//! Sizes and rates as people write them: `10GB`, `512MiB`, `500KB/s`,
//! `2MiB/s`, `8Mbit/s`. SI and IEC prefixes; bits only when spelled `bit`.

/// Why a size or rate was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// No number at the start.
    #[error("`{input}`: expected a number followed by a unit, e.g. {example}")]
    NoNumber {
        /// The whole input.
        input: String,
        /// Examples of the kind of value expected (a size or a rate).
        example: &'static str,
    },
    /// A unit we do not know.
    #[error("`{input}`: unknown unit `{unit}` (use B, kB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB, EiB, or bit, kbit, Mbit, Gbit, Tbit)")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit part.
        unit: String,
    },
    /// Above the largest size or rate capwise takes.
    #[error("`{input}` is too large: at most {limit}")]
    TooLarge {
        /// The whole input.
        input: String,
        /// The largest value taken, in words.
        limit: &'static str,
    },
    /// A rate needs `/s`.
    #[error("`{0}`: a rate needs a unit per second, e.g. 500KB/s")]
    NotARate(String),
}

/// The largest rate taken, in bytes per second: 100 Gbit/s. Above it a
/// value is a typo, not a link (and 2^64-1 B/s cannot be shown sensibly).
pub const MAX_RATE: u64 = 12_500_000_000;
/// [`MAX_RATE`] in words.
pub const MAX_RATE_TEXT: &str = "100 Gbit/s (12.5 GB/s)";
/// The largest size taken, in bytes: 1 EB.
pub const MAX_SIZE: u64 = 1_000_000_000_000_000_000;
/// [`MAX_SIZE`] in words.
const MAX_SIZE_TEXT: &str = "1 EB";

/// Examples shown when a size is not understood.
const SIZE_EXAMPLE: &str = "5GB or 500MiB";
/// Examples shown when a rate is not understood.
const RATE_EXAMPLE: &str = "500KB/s or 2MiB/s";

fn split_number<'a>(input: &'a str, example: &'static str) -> Result<(f64, &'a str), UnitError> {
    let no_number = || UnitError::NoNumber {
        input: input.to_string(),
        example,
    };
    let s = input.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..end].parse().map_err(|_| no_number())?;
    if !number.is_finite() || number < 0.0 {
        return Err(no_number());
    }
    Ok((number, s[end..].trim()))
}

/// Bytes per unit; `bit` units count an eighth of a byte.
fn unit_factor(unit: &str) -> Option<f64> {
    let (prefix, bits) = if let Some(p) = unit.strip_suffix("bit") {
        (p, true)
    } else if let Some(p) = unit.strip_suffix('B') {
        (p, false)
    } else if unit.is_empty() {
        ("", false)
    } else {
        return None;
    };
    let scale = match prefix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return None,
    };
    Some(if bits { scale / 8.0 } else { scale })
}

fn to_bytes(
    input: &str,
    number: f64,
    unit: &str,
    (max, limit): (u64, &'static str),
) -> Result<u64, UnitError> {
    let factor = unit_factor(unit).ok_or_else(|| UnitError::UnknownUnit {
        input: input.to_string(),
        unit: unit.to_string(),
    })?;
    let value = (number * factor).round();
    if value > max as f64 {
        return Err(UnitError::TooLarge {
            input: input.to_string(),
            limit,
        });
    }
    Ok(value as u64)
}

/// A size in bytes: `10GB`, `512MiB`, `1234`.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(input, SIZE_EXAMPLE)?;
    to_bytes(input, number, unit, (MAX_SIZE, MAX_SIZE_TEXT))
}

/// A rate in bytes per second: `500KB/s`, `2MiB/s`, `8Mbit/s`.
pub fn parse_rate(input: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(input, RATE_EXAMPLE)?;
    let unit = unit
        .strip_suffix("/s")
        .or_else(|| unit.strip_suffix("ps"))
        .ok_or_else(|| UnitError::NotARate(input.to_string()))?;
    to_bytes(input, number, unit, (MAX_RATE, MAX_RATE_TEXT))
}

/// A rate for people, the one formatter every command uses: SI units as
/// the rest of capwise writes them ("1.2 MB/s", "640 kB/s", "0 B/s").
pub fn format_rate(bytes_per_second: f64) -> String {
    capwise_policy::units::HumanRate(json_rate(bytes_per_second) as u64).to_string()
}

/// A size for people: "4.95 GB".
pub fn format_size(bytes: u64) -> String {
    capwise_policy::units::HumanBytes(bytes).to_string()
}

/// A rate as the API shows it: whole bytes per second, never negative
/// (no `-0.0`), 0 for anything not finite.
pub fn json_rate(bytes_per_second: f64) -> f64 {
    if bytes_per_second.is_finite() && bytes_per_second > 0.0 {
        bytes_per_second.round()
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_print_in_si_and_json_rates_are_never_negative_zero() {
        assert_eq!(format_rate(20_000_000.0), "20 MB/s");
        assert_eq!(format_rate(1_234_567.0), "1.23 MB/s");
        assert_eq!(format_rate(-0.0), "0 B/s");
        assert_eq!(format_rate(f64::NAN), "0 B/s");
        let zero = json_rate(-0.0);
        assert!(!zero.is_sign_negative());
        assert_eq!(serde_json::json!(zero).to_string(), "0.0");
        assert_eq!(json_rate(512_000.4), 512_000.0);
    }

    #[test]
    fn an_unknown_unit_lists_every_unit_that_is_accepted() {
        let message = parse_size("2XB").unwrap_err().to_string();
        for unit in ["TB", "TiB", "Tbit", "PB", "PiB", "EB"] {
            assert!(parse_size(&format!("1{unit}")).is_ok(), "{unit}");
            assert!(message.contains(unit), "{unit} missing: {message}");
        }
    }

    #[test]
    fn the_size_ceiling_can_be_written_in_its_own_unit() {
        assert_eq!(parse_size("1EB"), Ok(MAX_SIZE));
        assert_eq!(parse_size("2PB"), Ok(2_000_000_000_000_000));
        let message = parse_size("2EB").unwrap_err().to_string();
        assert!(message.contains("too large: at most 1 EB"), "{message}");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500KB/s"), Ok(500_000));
        assert_eq!(parse_rate("500kB/s"), Ok(500_000));
        assert_eq!(parse_rate("2MiB/s"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_rate("8Mbit/s"), Ok(1_000_000));
        assert_eq!(parse_rate("1.5 MB/s"), Ok(1_500_000));
        assert_eq!(parse_rate("100B/s"), Ok(100));
        assert!(matches!(parse_rate("5MB"), Err(UnitError::NotARate(_))));
        assert!(
            matches!(parse_rate("5Mb/s"), Err(UnitError::UnknownUnit { .. })),
            "bits only when spelled bit"
        );
        assert!(matches!(
            parse_rate("fast"),
            Err(UnitError::NoNumber { .. })
        ));
        let e = parse_rate("fast").unwrap_err().to_string();
        assert!(e.contains("500KB/s"), "{e}");
        assert_eq!(parse_rate("100Gbit/s"), Ok(MAX_RATE));
        let e = parse_rate("18446744073709551615B/s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 100 Gbit/s"), "{e}");
        assert!(parse_rate("101Gbit/s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("512MiB"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert!(parse_size("99999999999999999999TB").is_err());
        assert!(parse_size("-5MB").is_err());
        assert_eq!(parse_size("1000000TB"), Ok(MAX_SIZE));
        let e = parse_size("1000001TB").unwrap_err().to_string();
        assert!(e.contains("at most 1 EB"), "{e}");
        // A size is explained with sizes, not rates.
        let e = parse_size("lots").unwrap_err().to_string();
        assert!(e.contains("5GB") && !e.contains("/s"), "{e}");
    }
}
