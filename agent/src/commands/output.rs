//! Shared formatting of the policy commands: JSON printing, dates, and
//! allowances as JSON values.

use capwise_policy::decision::Allowance;
use capwise_policy::time::{civil_from_days, Timestamp};
use serde_json::Value;
use std::io::Write as _;

/// Prints a JSON value on stdout, pretty, with a final newline.
pub fn print_json(value: &Value) {
    // Serializing a `Value` cannot fail.
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Reports a failed command: the message on stderr for a person, and with
/// `--json` also `{"error": "..."}` on stdout, so that a script reading
/// stdout gets JSON either way (the exit status is non-zero in both cases).
/// The error and its causes on one line, skipping a cause whose text the
/// message before it already shows (library errors often embed their source).
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    let mut last = line.clone();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        last = text;
    }
    line
}

/// Every command's error goes through here.
pub fn report_error(message: &str, json: bool) {
    // Not eprintln!: with stderr closed the status must still be the error's.
    let _ = writeln!(std::io::stderr(), "capwise: {message}");
    if json {
        print_json(&error_json(message));
    }
}

/// The JSON object `--json` prints for an error.
pub fn error_json(message: &str) -> Value {
    serde_json::json!({ "error": message })
}

/// The first line of a command-line parsing error, without clap's
/// `error: ` prefix: what went wrong, without the usage text.
pub fn parse_error_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or_default().trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
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

/// A moment on the machine's clock, as a sentence says it: "10:04" today,
/// else "5 Dec 10:04".
pub fn local_clock(ts: Timestamp) -> String {
    use capwise_policy::time::ShortDate;
    use capwise_policy::zone::Zone;
    let now = Timestamp::now_from_system();
    let zone = Zone::system(now);
    let (then, today) = (zone.to_local(ts), zone.to_local(now));
    let clock = format!(
        "{:02}:{:02}",
        then.second_of_day / 3600,
        then.second_of_day % 3600 / 60
    );
    if then.date == today.date {
        clock
    } else {
        format!("{} {clock}", ShortDate(then.date))
    }
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

    #[test]
    fn errors_as_json_and_parse_errors_without_usage() {
        assert_eq!(
            error_json("no agent runs").to_string(),
            r#"{"error":"no agent runs"}"#
        );
        assert_eq!(
            parse_error_message(
                "error: invalid value 'lots' for '--cap <CAP>': bad\n\nUsage: capwise budget set\n"
            ),
            "invalid value 'lots' for '--cap <CAP>': bad"
        );
    }
}
