//! `batcher.v1.BatcherService`: validation, then the batcher's group commit.

use super::proto::batcher::v1::{
    BatchWriteRequest, BatchWriteResponse, batcher_service_server::BatcherService,
};
use super::{observe, validate};
use crate::batcher::{Batcher, WriteError};
use crate::config::Limits;
use std::time::Instant;
use tonic::{Request, Response, Status};

pub struct BatcherApi {
    batcher: Batcher,
    limits: Limits,
}

impl BatcherApi {
    pub fn new(batcher: Batcher, limits: Limits) -> Self {
        BatcherApi { batcher, limits }
    }
}

impl From<WriteError> for Status {
    fn from(e: WriteError) -> Status {
        match e {
            WriteError::Overloaded(_)
            | WriteError::OverloadedBytes { .. }
            | WriteError::Stalled(_)
            | WriteError::NoSpace(_) => not_applied(Status::resource_exhausted(e.to_string())),
            WriteError::Unavailable(_) => not_applied(Status::unavailable(e.to_string())),
            // ShuttingDown may come after the write was queued: unknown too.
            WriteError::OutcomeUnknown(_) | WriteError::ShuttingDown => {
                Status::unavailable(e.to_string())
            }
        }
    }
}

/// Marks a failure that certainly wrote nothing, so that a client may retry
/// it without risking a double write (`crate::client` does).
fn not_applied(status: Status) -> Status {
    use super::headers::{NOT_APPLIED, WRITE_OUTCOME_HEADER, mark};
    mark(status, WRITE_OUTCOME_HEADER, NOT_APPLIED)
}

#[tonic::async_trait]
impl BatcherService for BatcherApi {
    async fn batch_write(
        &self,
        request: Request<BatchWriteRequest>,
    ) -> Result<Response<BatchWriteResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let entries = validate::batch_write(request.into_inner(), &self.limits)?;
            let sequence = self.batcher.write(entries).await?;
            Ok(Response::new(BatchWriteResponse { sequence }))
        }
        .await;
        observe("BatchWrite", started, &result);
        result
    }
}
