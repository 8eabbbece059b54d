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
    /// Compaction debt as the index last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction_debt: Option<CompactionDebtStatus>,
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
    /// The most recent Job that did real work (for compaction: compacted or moved files
    /// down; "nothing to do" and "inputs claimed" do not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The Job that finished last with a real result (Succeeded or Failed): Degraded
    /// follows it, so a retry that is still running, or one that found nothing to do,
    /// does not clear a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<JobRun>,
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
    /// Running, Succeeded, Failed, NothingToDo or InputsClaimed.
    pub result: JobResult,
    /// Why the Job failed, from its Failed condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// True when started by the trigger annotation rather than the schedule.
    #[serde(default)]
    pub manual: bool,
    /// True when started because the index reported compaction debt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debt: bool,
}

/// Outcome of a Job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum JobResult {
    /// Not finished yet.
    Running,
    /// Did real work (compaction: compacted or moved files down; exit 0).
    Succeeded,
    /// Failed (an error, the backoff limit or the active deadline); marks the store Degraded.
    Failed,
    /// Compaction found nothing to do (exit 3): neither a success nor a failure.
    NothingToDo,
    /// Another compaction Job held the inputs (exit 4): neither a success nor a failure.
    InputsClaimed,
}

impl JobResult {
    /// Finished without doing work and without failing.
    pub fn is_idle(self) -> bool {
        matches!(self, JobResult::NothingToDo | JobResult::InputsClaimed)
    }
}

/// Compaction debt as the index reports it on `GET /lsm` (read by the operator through
/// the index Service).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactionDebtStatus {
    /// Level-0 files (flushes of the WAL tier not yet compacted, overlapping each other).
    pub l0_files: i64,
    /// Bytes in level 0.
    pub l0_bytes: i64,
    /// Estimated bytes compaction must still rewrite.
    pub pending_bytes: i64,
    /// Highest score (level 0: files / trigger; other levels: bytes / target).
    pub score: f64,
    /// Some score is at least 1: compaction Jobs are due.
    pub needs_compaction: bool,
    /// Per level: files, bytes, target and score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<LevelDebtStatus>,
    /// Manifest version the index computed the debt from.
    pub manifest_version: i64,
    /// When the operator read it.
    pub observed_at: Time,
    /// One line for `kubectl get sv -o wide`, e.g. `score 2.10, 1.3Gi pending`.
    pub summary: String,
}

/// One level of the LSM tree.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LevelDebtStatus {
    /// Level number (0 = WAL files).
    pub level: i32,
    /// Files in the level.
    pub files: i64,
    /// Bytes in the level.
    pub bytes: i64,
    /// Size target of the level.
    pub target_bytes: i64,
    /// bytes / target (level 0: files / trigger).
    pub score: f64,
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
