//! Cron schedule computation for the maintenance Jobs, as pure functions of "now" so the
//! rules (next run, missed runs, starting deadline, suspend) are unit-tested.
//!
//! Semantics follow the CronJob controller with `concurrencyPolicy: Forbid`: of all the
//! schedule times missed since the last run only the latest is run, and only if it is no
//! older than the starting deadline.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Most missed times counted one by one; beyond this the count saturates.
pub const MAX_MISSED_COUNTED: u32 = 100;

/// A parsed five-field cron schedule evaluated in UTC.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
}

/// The schedule text did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid cron schedule {expr:?}: {reason}")]
pub struct ScheduleError {
    pub expr: String,
    pub reason: String,
}

impl Schedule {
    /// Five fields or an `@hourly`-style macro; seconds and years are rejected so the syntax
    /// matches Kubernetes CronJobs.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expr).map_err(|e| ScheduleError {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        let schedule = Schedule { cron };
        // A pattern like "0 0 30 2 *" parses but never fires: treat it as invalid.
        if schedule.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(ScheduleError {
                expr: expr.into(),
                reason: "never fires".into(),
            });
        }
        Ok(schedule)
    }

    /// First schedule time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let z = utc(t);
        self.cron
            .find_next_occurrence(&z, false)
            .ok()
            .map(|n| n.timestamp())
    }

    /// Latest schedule time at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let z = utc(t);
        self.cron
            .find_previous_occurrence(&z, true)
            .ok()
            .map(|p| p.timestamp())
    }
}

fn utc(t: Timestamp) -> Zoned {
    t.to_zoned(TimeZone::UTC)
}

/// What the scheduler knows when it decides.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleInput {
    pub now: Timestamp,
    /// The latest schedule time a Job was already created for; `None` before the first run.
    pub last_scheduled: Option<Timestamp>,
    /// When the SkyVault was created: times before it are never due.
    pub created: Timestamp,
    pub suspend: bool,
    pub starting_deadline: SignedDuration,
}

/// What to do now, and when to look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleDecision {
    /// Schedule time whose Job should be created now.
    pub due: Option<Timestamp>,
    /// Schedule times passed since `last_scheduled` that get no Job of their own (all but the
    /// latest, plus the latest when it is too late or suspended). Saturates at
    /// [`MAX_MISSED_COUNTED`].
    pub missed: u32,
    /// The latest passed time, when it was skipped for being older than the deadline.
    pub too_late: Option<Timestamp>,
    /// Next schedule time after now; `None` while suspended.
    pub next: Option<Timestamp>,
}

/// Decide whether a Job is due. Pure: the caller supplies the clock.
pub fn decide(schedule: &Schedule, input: ScheduleInput) -> ScheduleDecision {
    let since = input
        .last_scheduled
        .map_or(input.created, |l| l.max(input.created));
    let latest = schedule
        .latest_at_or_before(input.now)
        .filter(|t| *t > since);
    let passed = latest.map_or(0, |_| count_between(schedule, since, input.now));
    let next = (!input.suspend)
        .then(|| schedule.next_after(input.now))
        .flatten();
    let Some(latest) = latest else {
        return ScheduleDecision {
            due: None,
            missed: 0,
            too_late: None,
            next,
        };
    };
    if input.suspend {
        return ScheduleDecision {
            due: None,
            missed: passed,
            too_late: None,
            next,
        };
    }
    if input.now.duration_since(latest) > input.starting_deadline {
        return ScheduleDecision {
            due: None,
            missed: passed,
            too_late: Some(latest),
            next,
        };
    }
    ScheduleDecision {
        due: Some(latest),
        missed: passed.saturating_sub(1),
        too_late: None,
        next,
    }
}

/// Schedule times in `(after, until]`, counted up to [`MAX_MISSED_COUNTED`].
fn count_between(schedule: &Schedule, after: Timestamp, until: Timestamp) -> u32 {
    let mut count = 0;
    let mut cursor = after;
    while count < MAX_MISSED_COUNTED {
        match schedule.next_after(cursor) {
            Some(t) if t <= until => {
                count += 1;
                cursor = t;
            }
            _ => break,
        }
    }
    count
}

/// Whole minutes since the Unix epoch: the suffix of deterministic Job names.
pub fn unix_minute(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn input(now: &str, last: Option<&str>) -> ScheduleInput {
        ScheduleInput {
            now: ts(now),
            last_scheduled: last.map(ts),
            created: ts("2030-01-01T00:00:00Z"),
            suspend: false,
            starting_deadline: SignedDuration::from_secs(3600),
        }
    }

    fn every_10m() -> Schedule {
        Schedule::parse("*/10 * * * *").unwrap()
    }

    #[test]
    fn parses_five_fields_and_macros_only() {
        assert!(Schedule::parse("*/10 * * * *").is_ok());
        assert!(Schedule::parse("@hourly").is_ok());
        assert!(Schedule::parse("17 3 * * MON-FRI").is_ok());
        assert!(Schedule::parse("0 */10 * * * *").is_err(), "seconds field");
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("not a schedule").is_err());
        let err = Schedule::parse("0 0 30 2 *").unwrap_err();
        assert!(err.to_string().contains("never fires"), "{err}");
    }

    #[test]
    fn next_run_is_strictly_after_now_in_utc() {
        let s = every_10m();
        assert_eq!(
            s.next_after(ts("2030-01-01T00:00:00Z")),
            Some(ts("2030-01-01T00:10:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2030-01-01T00:09:59Z")),
            Some(ts("2030-01-01T00:10:00Z"))
        );
        let daily = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            daily.next_after(ts("2030-06-01T03:00:00Z")),
            Some(ts("2030-06-02T02:30:00Z"))
        );
    }

    #[test]
    fn nothing_due_before_the_first_time_after_creation() {
        let d = decide(&every_10m(), input("2030-01-01T00:05:00Z", None));
        assert_eq!(d.due, None);
        assert_eq!(d.missed, 0);
        assert_eq!(d.next, Some(ts("2030-01-01T00:10:00Z")));
    }

    #[test]
    fn due_at_the_schedule_time() {
        let d = decide(&every_10m(), input("2030-01-01T00:10:00Z", None));
        assert_eq!(d.due, Some(ts("2030-01-01T00:10:00Z")));
        assert_eq!(d.next, Some(ts("2030-01-01T00:20:00Z")));
    }

    #[test]
    fn not_due_again_once_created() {
        let d = decide(
            &every_10m(),
            input("2030-01-01T00:12:00Z", Some("2030-01-01T00:10:00Z")),
        );
        assert_eq!(d.due, None);
        assert_eq!(d.missed, 0);
    }

    #[test]
    fn missed_runs_coalesce_into_the_latest() {
        // Operator was down from 00:05 to 00:47: 00:10..00:40 passed, only 00:40 runs.
        let d = decide(
            &every_10m(),
            input("2030-01-01T00:47:00Z", Some("2030-01-01T00:00:00Z")),
        );
        assert_eq!(d.due, Some(ts("2030-01-01T00:40:00Z")));
        assert_eq!(d.missed, 3);
        assert_eq!(d.next, Some(ts("2030-01-01T00:50:00Z")));
    }

    #[test]
    fn too_late_run_is_skipped() {
        let mut i = input("2030-01-01T02:05:00Z", Some("2030-01-01T00:00:00Z"));
        i.starting_deadline = SignedDuration::from_secs(120);
        let d = decide(&every_10m(), i);
        assert_eq!(d.due, None);
        assert_eq!(d.too_late, Some(ts("2030-01-01T02:00:00Z")));
        assert_eq!(d.missed, 12);
        // Within the deadline it would have run.
        i.now = ts("2030-01-01T02:01:00Z");
        assert_eq!(
            decide(&every_10m(), i).due,
            Some(ts("2030-01-01T02:00:00Z"))
        );
    }

    #[test]
    fn suspended_schedule_runs_nothing_and_has_no_next() {
        let mut i = input("2030-01-01T00:31:00Z", Some("2030-01-01T00:00:00Z"));
        i.suspend = true;
        let d = decide(&every_10m(), i);
        assert_eq!(d.due, None);
        assert_eq!(d.next, None);
        assert_eq!(d.missed, 3);
        // Unsuspending within the deadline runs the latest missed time.
        i.suspend = false;
        assert_eq!(
            decide(&every_10m(), i).due,
            Some(ts("2030-01-01T00:30:00Z"))
        );
    }

    #[test]
    fn missed_count_saturates() {
        let mut i = input("2030-12-31T23:55:00Z", Some("2030-01-01T00:00:00Z"));
        i.starting_deadline = SignedDuration::from_secs(60);
        let d = decide(&every_10m(), i);
        assert_eq!(d.missed, MAX_MISSED_COUNTED);
        assert_eq!(d.too_late, Some(ts("2030-12-31T23:50:00Z")));
    }

    #[test]
    fn times_before_creation_are_never_due() {
        let mut i = input("2030-01-01T00:05:00Z", Some("2029-12-31T23:00:00Z"));
        i.created = ts("2030-01-01T00:01:00Z");
        assert_eq!(decide(&every_10m(), i).due, None);
    }

    #[test]
    fn unix_minute_floors() {
        assert_eq!(unix_minute(ts("1970-01-01T00:01:59Z")), 1);
        assert_eq!(unix_minute(ts("2030-01-01T00:10:00Z")), 31_557_610);
    }
}
