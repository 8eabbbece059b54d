//! Response metadata with which the services tell clients what a failure
//! means, so that clients decide from a value rather than from message text
//! (which may change and is for people).

use tonic::Status;
use tonic::metadata::MetadataValue;

/// On a failed `BatchWrite` that certainly wrote nothing (refused before the
/// commit, or a commit the database refused): a client may retry it safely.
pub const WRITE_OUTCOME_HEADER: &str = "skyvault-write-outcome";
/// The value of [`WRITE_OUTCOME_HEADER`] meaning "nothing was written".
pub const NOT_APPLIED: &str = "not-applied";

/// Why a read failed, when the client can act on it.
pub const READ_ERROR_HEADER: &str = "skyvault-read-error";
/// The BatchGet response would exceed the server's byte budget: split the keys.
pub const RESPONSE_BUDGET: &str = "response-budget";
/// This index has not applied the requested sequence yet: another may have.
pub const NOT_YET_APPLIED: &str = "not-yet-applied";

/// `status` carrying `header: value`.
pub fn mark(mut status: Status, header: &'static str, value: &'static str) -> Status {
    status
        .metadata_mut()
        .insert(header, MetadataValue::from_static(value));
    status
}

/// Whether `status` carries `header: value`.
pub fn marked(status: &Status, header: &str, value: &str) -> bool {
    status.metadata().get(header).is_some_and(|v| v == value)
}
