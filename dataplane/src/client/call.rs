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

/// Metadata the SkyVault batcher puts on a failed `BatchWrite` that
/// certainly wrote nothing (refused before the commit, or a commit the
/// database refused), so that a client may retry it safely.
pub const WRITE_OUTCOME_HEADER: &str = "skyvault-write-outcome";
/// The value of [`WRITE_OUTCOME_HEADER`] meaning "nothing was written".
pub const NOT_APPLIED: &str = "not-applied";

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

/// The BatchGet response was over the server's byte budget.
pub(super) fn is_budget(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted && status.message().contains("budget")
}

fn not_applied(status: &Status) -> bool {
    status
        .metadata()
        .get(WRITE_OUTCOME_HEADER)
        .is_some_and(|v| v == NOT_APPLIED)
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

    fn marked(mut status: Status) -> Status {
        status
            .metadata_mut()
            .insert(WRITE_OUTCOME_HEADER, NOT_APPLIED.parse().unwrap());
        status
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
        assert_eq!(classify(&budget, Kind::Read), Verdict::Fail);
    }

    #[test]
    fn writes_retry_only_when_nothing_was_written() {
        let unknown = Verdict::OutcomeUnknown { eject: false };
        assert_eq!(
            classify(&Status::resource_exhausted("queue full"), Kind::Write),
            Verdict::Retry { eject: false }
        );
        assert_eq!(
            classify(&marked(Status::unavailable("store down")), Kind::Write),
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
