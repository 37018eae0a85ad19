//! Shared formatting of the policy commands: JSON printing, dates, and
//! allowances as JSON values.

use capwise_policy::decision::Allowance;
use capwise_policy::time::{civil_from_days, Timestamp};
use serde_json::Value;

/// Prints a JSON value on stdout, pretty, with a final newline.
pub fn print_json(value: &Value) {
    // Serializing a `Value` cannot fail.
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `2024-12-05 10:00 UTC`; the epoch itself means "never" in the store.
pub fn format_timestamp(ts: Timestamp) -> String {
    if ts.0 <= 0 {
        return "never".into();
    }
    let (year, month, day) = civil_from_days(ts.0.div_euclid(86_400));
    let second_of_day = ts.0.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        second_of_day / 3600,
        second_of_day % 3600 / 60
    )
}

/// `"unlimited"`, `"suspended"`, or a rate in bytes per second.
pub fn allowance_json(allowance: Allowance) -> Value {
    match allowance {
        Allowance::Unlimited => Value::from("unlimited"),
        Allowance::Suspended => Value::from("suspended"),
        Allowance::Rate(rate) => Value::from(rate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_allowances() {
        assert_eq!(format_timestamp(Timestamp(0)), "never");
        assert_eq!(
            format_timestamp(Timestamp(1_733_392_800)),
            "2024-12-05 10:00 UTC"
        );
        assert_eq!(allowance_json(Allowance::Rate(64_000)), Value::from(64_000));
        assert_eq!(
            allowance_json(Allowance::Suspended),
            Value::from("suspended")
        );
    }
}
