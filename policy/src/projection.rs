//! Where a period's use is heading: the use so far extended in a straight
//! line to the period's end. Pure arithmetic on (start, end, now, used), so
//! the dashboard and the API say the same thing and it can be tested.

use crate::time::Timestamp;

/// Before this much of a period has passed, a straight line from a few
/// minutes of traffic says nothing (one morning update would project
/// terabytes): no projection is made.
pub const MIN_ELAPSED_SECS: i64 = 3_600;

/// The use a period is heading for, from its use so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projection {
    /// Bytes at the period's end if use goes on at its average rate so far.
    pub end_bytes: u64,
    /// When that line reaches the limit it was asked about, if it does
    /// before the period ends (already reached: `now`).
    pub reaches_limit_at: Option<Timestamp>,
}

/// The linear projection of `used` bytes in `[start, now)` to `end`, and
/// when it reaches `limit`. `None` when the period is not under way (now
/// outside it) or less than [`MIN_ELAPSED_SECS`] of it has passed.
pub fn linear(
    start: Timestamp,
    end: Timestamp,
    now: Timestamp,
    used: u64,
    limit: u64,
) -> Option<Projection> {
    if now < start || now >= end {
        return None;
    }
    let elapsed = (now.0 - start.0) as u128;
    let length = (end.0 - start.0) as u128;
    if elapsed < MIN_ELAPSED_SECS as u128 {
        return None;
    }
    // u128: a large cap times a long period cannot overflow.
    let end_bytes = (used as u128 * length / elapsed).min(u64::MAX as u128) as u64;
    let reaches_limit_at = if used >= limit {
        Some(now)
    } else if end_bytes >= limit && used > 0 {
        // The line crosses `limit` at start + limit / rate.
        let secs = (limit as u128 * elapsed).div_ceil(used as u128);
        Some(Timestamp(start.0 + secs.min(length) as i64))
    } else {
        None
    };
    Some(Projection {
        end_bytes,
        reaches_limit_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn a_third_of_the_way_with_a_third_used_ends_at_the_whole() {
        let p = linear(
            Timestamp(0),
            Timestamp(30 * DAY),
            Timestamp(10 * DAY),
            1_000,
            5_000,
        )
        .unwrap();
        assert_eq!(p.end_bytes, 3_000);
        assert_eq!(p.reaches_limit_at, None, "3000 stays under 5000");
    }

    #[test]
    fn the_line_says_when_it_crosses_the_limit() {
        // 100 B a day: 2000 B is reached on day 20 of 30.
        let p = linear(
            Timestamp(0),
            Timestamp(30 * DAY),
            Timestamp(10 * DAY),
            1_000,
            2_000,
        )
        .unwrap();
        assert_eq!(p.end_bytes, 3_000);
        assert_eq!(p.reaches_limit_at, Some(Timestamp(20 * DAY)));
    }

    #[test]
    fn a_limit_already_passed_is_reached_now() {
        let p = linear(
            Timestamp(0),
            Timestamp(30 * DAY),
            Timestamp(10 * DAY),
            2_500,
            2_000,
        )
        .unwrap();
        assert_eq!(p.reaches_limit_at, Some(Timestamp(10 * DAY)));
    }

    #[test]
    fn nothing_used_projects_nothing() {
        let p = linear(Timestamp(0), Timestamp(30 * DAY), Timestamp(DAY), 0, 2_000).unwrap();
        assert_eq!(
            p,
            Projection {
                end_bytes: 0,
                reaches_limit_at: None
            }
        );
    }

    #[test]
    fn too_early_or_outside_the_period_there_is_none() {
        let (start, end) = (Timestamp(1_000), Timestamp(1_000 + 30 * DAY));
        assert_eq!(
            linear(start, end, Timestamp(1_000 + MIN_ELAPSED_SECS - 1), 10, 20),
            None
        );
        assert!(linear(start, end, Timestamp(1_000 + MIN_ELAPSED_SECS), 10, 20).is_some());
        assert_eq!(linear(start, end, Timestamp(999), 10, 20), None);
        assert_eq!(linear(start, end, end, 10, 20), None);
    }

    #[test]
    fn huge_figures_do_not_overflow() {
        let p = linear(
            Timestamp(0),
            Timestamp(i64::MAX / 2),
            Timestamp(MIN_ELAPSED_SECS),
            u64::MAX,
            u64::MAX,
        )
        .unwrap();
        assert_eq!(p.end_bytes, u64::MAX);
        assert_eq!(p.reaches_limit_at, Some(Timestamp(MIN_ELAPSED_SECS)));
    }
}
