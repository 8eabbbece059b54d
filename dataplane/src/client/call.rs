//! One operation: attempts against the pool within the deadline, retried
//! with backoff when the failure had no effect, and never when a write's
//! outcome is unknown.

use super::ClientError;
use super::options::RetryPolicy;
use super::pool::Pool;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::api::headers::{
    NOT_APPLIED, NOT_YET_APPLIED, READ_ERROR_HEADER, RESPONSE_BUDGET, WRITE_OUTCOME_HEADER, marked,
};

/// Reads may always be repeated; a write only when it surely had no effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Read,
    Write,
}

/// What to do about a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing happened: try again (on another address when `eject`).
    Retry {
        eject: bool,
    },
    /// A write that may or may not have been applied: tell the caller.
    OutcomeUnknown {
        eject: bool,
    },
    Fail,
}

/// Decides a failed attempt's fate from its status.
pub(super) fn classify(status: &Status, kind: Kind) -> Verdict {
    let transport = std::error::Error::source(status).is_some();
    match (status.code(), kind) {
        // The BatchGet response budget: the caller splits the request.
        (Code::ResourceExhausted, Kind::Read) if is_budget(status) => Verdict::Fail,
        // That index is behind the sequence asked for: another may not be.
        (_, Kind::Read) if marked(status, READ_ERROR_HEADER, NOT_YET_APPLIED) => {
            Verdict::Retry { eject: false }
        }
        // Overload: the server refused before doing anything.
        (Code::ResourceExhausted, _) => Verdict::Retry { eject: false },
        (Code::Unavailable, Kind::Read) => Verdict::Retry { eject: transport },
        (Code::Unavailable, Kind::Write) if not_applied(status) => Verdict::Retry { eject: false },
        (Code::Unavailable, Kind::Write) if never_connected(status) => {
            Verdict::Retry { eject: true }
        }
        // Sent, and no answer saying it failed cleanly.
        (
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown,
            Kind::Write,
        ) => Verdict::OutcomeUnknown { eject: transport },
        _ => Verdict::Fail,
    }
}

/// The BatchGet response was over the server's byte budget. Servers before
/// the read-error header said so only in the message: that is still read
/// when the header is absent, for rolling upgrades.
pub(super) fn is_budget(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted
        && match status.metadata().get(READ_ERROR_HEADER) {
            Some(value) => value == RESPONSE_BUDGET,
            None => status.message().contains("budget"),
        }
}

fn not_applied(status: &Status) -> bool {
    marked(status, WRITE_OUTCOME_HEADER, NOT_APPLIED)
}

/// The connection was refused: the request never left this process.
fn never_connected(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Runs `attempt` (given a channel and the time left) until it succeeds, a
/// failure is final, the attempts are used up, or the deadline has passed.
pub(super) async fn with_retries<T, F, Fut>(
    pool: &Arc<Pool>,
    kind: Kind,
    timeout: Duration,
    retry: &RetryPolicy,
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut(Channel, Duration) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + timeout;
    let mut tries = 0;
    loop {
        tries += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let picked = pool.pick();
        let outcome = tokio::time::timeout(left, attempt(picked.channel, left)).await;
        let status = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(status)) => status,
            Err(_) => Status::deadline_exceeded(format!(
                "no answer from {} within the client's deadline of {timeout:?}",
                picked.uri
            )),
        };
        let verdict = classify(&status, kind);
        if let Verdict::Retry { eject: true } | Verdict::OutcomeUnknown { eject: true } = verdict {
            pool.eject(&picked.uri);
        }
        match verdict {
            Verdict::Retry { .. } => {}
            Verdict::OutcomeUnknown { .. } => return Err(ClientError::WriteOutcomeUnknown(status)),
            Verdict::Fail => return Err(ClientError::Status(status)),
        }
        let wait = retry.backoff(tries - 1);
        if tries >= retry.max_attempts || Instant::now() + wait >= deadline {
            return Err(ClientError::Status(status));
        }
        tracing::debug!(code = ?status.code(), uri = %picked.uri, ?wait, "retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::headers::mark;

    fn nothing_written(status: Status) -> Status {
        mark(status, WRITE_OUTCOME_HEADER, NOT_APPLIED)
    }

    #[test]
    fn reads_retry_overload_and_unavailability_but_not_bad_input() {
        let retry = Verdict::Retry { eject: false };
        assert_eq!(classify(&Status::unavailable("x"), Kind::Read), retry);
        assert_eq!(
            classify(&Status::resource_exhausted("queue"), Kind::Read),
            retry
        );
        assert_eq!(
            classify(&Status::invalid_argument("keys"), Kind::Read),
            Verdict::Fail
        );
        let budget = Status::resource_exhausted("BatchGet response over its budget");
        assert_eq!(
            classify(&budget, Kind::Read),
            Verdict::Fail,
            "an older server"
        );
        let budget = mark(
            Status::resource_exhausted("too big"),
            READ_ERROR_HEADER,
            RESPONSE_BUDGET,
        );
        assert_eq!(classify(&budget, Kind::Read), Verdict::Fail);
        let overload = mark(
            Status::resource_exhausted("over budget of requests"),
            READ_ERROR_HEADER,
            "something-else",
        );
        assert_eq!(classify(&overload, Kind::Read), retry, "the header decides");
    }

    /// An index behind the sequence asked for sends the read elsewhere,
    /// whichever code carried it; an unmarked deadline is final.
    #[test]
    fn reads_an_index_has_not_applied_yet_go_to_another() {
        for status in [
            Status::deadline_exceeded("not yet applied"),
            Status::unavailable("not yet applied"),
        ] {
            let status = mark(status, READ_ERROR_HEADER, NOT_YET_APPLIED);
            assert_eq!(
                classify(&status, Kind::Read),
                Verdict::Retry { eject: false }
            );
        }
        assert_eq!(
            classify(&Status::deadline_exceeded("late"), Kind::Read),
            Verdict::Fail
        );
    }

    #[test]
    fn writes_retry_only_when_nothing_was_written() {
        let unknown = Verdict::OutcomeUnknown { eject: false };
        assert_eq!(
            classify(&Status::resource_exhausted("queue full"), Kind::Write),
            Verdict::Retry { eject: false }
        );
        assert_eq!(
            classify(
                &nothing_written(Status::unavailable("store down")),
                Kind::Write
            ),
            Verdict::Retry { eject: false }
        );
        for status in [
            Status::unavailable("write outcome unknown"),
            Status::deadline_exceeded("late"),
            Status::cancelled("gone"),
        ] {
            assert_eq!(classify(&status, Kind::Write), unknown, "{status:?}");
        }
    }
}
