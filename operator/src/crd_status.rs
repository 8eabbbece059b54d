//! Status of a `SkyVault`, written only by the operator through the status subresource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a SkyVault.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkyVaultStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`; see docs/operations.md for every reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Batcher replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batcher: Option<RoleStatus>,
    /// Index replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<RoleStatus>,
    /// Cache replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<RoleStatus>,
    /// Compaction Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction: Option<JobKindStatus>,
    /// Purge Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<JobKindStatus>,
    /// Addresses clients connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
}

/// Replica counts of one role (from its StatefulSet).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// Replicas asked for in the spec.
    pub desired: i32,
    /// Replicas passing their readiness probe.
    pub ready: i32,
    /// Replicas running the current Pod template.
    pub updated: i32,
    /// `ready/desired`, for `kubectl get`.
    pub summary: String,
}

/// State of one kind of maintenance Job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobKindStatus {
    /// The most recent Job (running or finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<JobRun>,
    /// The most recent Job that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The latest schedule time a Job was created for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the next scheduled Job is due (absent while suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Value of the trigger annotation last acted on, so one annotation value runs one Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_trigger: Option<String>,
}

/// One maintenance Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    /// Name of the Job.
    pub job_name: String,
    /// Schedule time it was created for (the trigger time for manual runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// When the Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Job finished (succeeded or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Running, Succeeded or Failed.
    pub result: JobResult,
    /// Why the Job failed, from its Failed condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// True when started by the trigger annotation rather than the schedule.
    #[serde(default)]
    pub manual: bool,
}

/// Outcome of a Job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum JobResult {
    Running,
    Succeeded,
    Failed,
}

/// In-cluster addresses of the client-facing Services.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// gRPC address for BatchWrite: `NAME-batcher.NAMESPACE.svc:50051`.
    pub batcher: String,
    /// gRPC address for BatchGet/Scan: `NAME-index.NAMESPACE.svc:50051`.
    pub index: String,
}
