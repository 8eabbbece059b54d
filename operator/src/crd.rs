//! The `SkyVault` custom resource (`skyvault.io/v1alpha1`): the spec a user writes.
//!
//! Every field carries a doc comment because it becomes the schema description that
//! `kubectl explain sv.spec...` prints. Validation lives in the schema wherever the
//! API server can express it (ranges, patterns, CEL rules); `validate.rs` checks the
//! rest. All `Option` fields skip `None` so server-side apply never sends `null`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, PodSecurityContext, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::crd_security::*;
pub use crate::crd_status::*;

/// API group of the custom resource.
pub const GROUP: &str = "skyvault.io";
/// Longest `metadata.name` accepted: the longest child name, `NAME-compact-<minute>-m`,
/// plus Kubernetes' own suffixes must stay within a 63-character DNS label.
pub const MAX_NAME_LEN: usize = 40;

/// Desired state of a SkyVault: image, storage, the three tiers, maintenance Jobs and
/// Pod settings. Omitted sections take the documented defaults.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "skyvault.io",
    version = "v1alpha1",
    kind = "SkyVault",
    plural = "skyvaults",
    shortname = "sv",
    category = "skyvault",
    namespaced,
    status = "SkyVaultStatus",
    derive = "PartialEq",
    doc = "A SkyVault key-value store: batcher, index and cache tiers on an S3-compatible object store with metadata in PostgreSQL, plus scheduled compaction and purge Jobs.",
    validation = Rule::new("size(self.metadata.name) <= 40").message("metadata.name must be at most 40 characters: child names such as NAME-compact-<minute> must fit in 63"),
    validation = Rule::new("self.spec.batcher.l0StopFiles == 0 || self.spec.batcher.l0StopFiles > self.spec.compaction.l0TriggerFiles").message("spec.batcher.l0StopFiles must be 0 (off) or more than spec.compaction.l0TriggerFiles: writes would stop before level 0 is due for compaction, and nothing would ever start it"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter) because it names Services"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether every role has all replicas ready"),
    printcolumn(name = "Batcher", type_ = "string", json_path = ".status.batcher.summary", description = "Ready/desired batcher replicas"),
    printcolumn(name = "Index", type_ = "string", json_path = ".status.index.summary", description = "Ready/desired index replicas"),
    printcolumn(name = "Cache", type_ = "string", json_path = ".status.cache.summary", description = "Ready/desired cache replicas"),
    printcolumn(name = "Last Compaction", type_ = "date", json_path = ".status.compaction.lastSuccessfulTime", description = "When the last successful compaction Job finished"),
    printcolumn(name = "L0 Files", type_ = "integer", json_path = ".status.compactionDebt.l0Files", description = "Level-0 files (flushes of the WAL tier) the index reported at its last reading: the compaction debt"),
    printcolumn(name = "Debt", type_ = "string", json_path = ".status.compactionDebt.summary", priority = 1, description = "Compaction debt at the last reading: highest level score and bytes compaction must still rewrite"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1, description = "Reason of the Ready condition"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SkyVaultSpec {
    /// Container image holding the `skyvault` binary, used by every role and Job
    /// (for example `ghcr.io/example/skyvault:0.1.0`).
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// When the kubelet pulls the image: Always, IfNotPresent or Never.
    /// Defaults to Kubernetes' own rule (Always for `:latest`, otherwise IfNotPresent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Names of Secrets (type kubernetes.io/dockerconfigjson) used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<String>,

    /// Where the data files live: an S3-compatible bucket.
    pub object_store: ObjectStoreSpec,

    /// The metadata database (PostgreSQL): which files exist and in what order.
    pub database: DatabaseSpec,

    /// The write tier: groups client writes into files and commits them.
    #[serde(default)]
    pub batcher: BatcherSpec,

    /// The read tier: serves BatchGet/Scan from the manifest, reading through the cache tier.
    #[serde(default)]
    pub index: IndexSpec,

    /// The cache tier: holds file footers, indexes and blocks; objects are spread over
    /// replicas by rendezvous hashing on their stable names.
    #[serde(default)]
    pub cache: CacheSpec,

    /// Compaction Jobs (`skyvault compact`): merge files down the levels of the LSM tree,
    /// started when the index reports debt and on a schedule.
    #[serde(default)]
    pub compaction: CompactionSpec,

    /// Scheduled purge Jobs (`skyvault purge`): delete objects no longer referenced.
    #[serde(default)]
    pub purge: PurgeSpec,

    /// Pod settings applied to every data-plane Pod and Job Pod.
    #[serde(default)]
    pub pod: PodOverrides,

    /// Log level and format of the data plane.
    #[serde(default)]
    pub logging: LoggingSpec,

    /// TLS on the gRPC listeners and between roles (docs/security.md). Unset: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Bearer tokens the batcher and the index require. Unset: no client authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// NetworkPolicies the operator writes for the pods (on by default).
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
}

/// Image pull policy of the data-plane containers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// An S3-compatible bucket (AWS S3, MinIO, moto, ...).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.bucket == oldSelf.bucket").message("objectStore.bucket is immutable: changing it would point the store at other data"))]
#[x_kube(validation = Rule::new("self.prefix == oldSelf.prefix").message("objectStore.prefix is immutable: changing it would point the store at other data"))]
pub struct ObjectStoreSpec {
    /// Bucket name (S3 rules: 3-63 lowercase letters, digits, '.', '-'). Immutable.
    #[schemars(length(min = 3, max = 63), pattern(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"))]
    pub bucket: String,

    /// Key prefix inside the bucket, without a leading '/', e.g. `prod/` ("" = bucket root). Immutable.
    #[serde(default)]
    #[schemars(length(max = 256), pattern(r"^([^/].*)?$"))]
    pub prefix: String,

    /// S3 endpoint URL for non-AWS servers, e.g. `http://minio.storage:9000`.
    /// Omit for AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), pattern(r"^https?://[^\s/]+(/.*)?$"))]
    pub endpoint: Option<String>,

    /// Region passed to the S3 client.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64))]
    pub region: String,

    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`
    /// (needed by MinIO, moto and most non-AWS servers).
    #[serde(default)]
    pub path_style: bool,

    /// Secret with static S3 credentials. Omit to use the default AWS credential chain
    /// (for example IRSA / Pod Identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<S3CredentialsSecret>,
}

/// A Secret holding an S3 access key pair.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.accessKeyIdKey != self.secretAccessKeyKey").message("objectStore.credentialsSecret: accessKeyIdKey and secretAccessKeyKey must name different keys"))]
pub struct S3CredentialsSecret {
    /// Name of the Secret, in the SkyVault's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key of the access key id in the Secret.
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: String,

    /// Key of the secret access key in the Secret.
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key_key: String,
}

/// The metadata database.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.urlSecret == oldSelf.urlSecret").message("database.urlSecret is immutable: another Secret may name another database, and pods of the old and new settings would disagree about the store; change the URL inside the Secret for a move of the same database"))]
pub struct DatabaseSpec {
    /// Secret key holding the database URL, `postgres://user:pass@host:5432/db`.
    /// Immutable (the Secret's name and key); the pods check at start that the
    /// database and the bucket belong to the same store (docs/security.md).
    pub url_secret: SecretKeyRef,
}

/// One key of a Secret in the SkyVault's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[serde(default = "default_url_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// PodDisruptionBudget for one role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudgetSpec {
    /// Create a PodDisruptionBudget for this role. When switched off, the operator deletes it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods of this role that voluntary disruptions (drains) may take down at once.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_unavailable: i32,
}

impl Default for DisruptionBudgetSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_unavailable: 1,
        }
    }
}

/// The batcher (write) tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.l0SlowdownFiles == 0 || self.l0StopFiles == 0 || self.l0SlowdownFiles < self.l0StopFiles").message("batcher.l0SlowdownFiles must be below batcher.l0StopFiles (or either 0, off): writers must be slowed before they are stopped"))]
#[x_kube(validation = Rule::new("self.walStopBytes == 0 || self.walStopBytes > self.walFlushBytes").message("batcher.walStopBytes must be 0 or more than batcher.walFlushBytes: writes would stop before the WAL tier is due for its flush"))]
pub struct BatcherSpec {
    /// Number of batcher Pods.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// CPU/memory requests and limits of the batcher container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A batch is flushed to the object store once it holds this many bytes.
    #[serde(default = "default_batch_max_bytes")]
    #[schemars(range(min = 1024, max = 1_073_741_824))]
    pub batch_max_bytes: i64,
    /// ... or once its oldest write has waited this many milliseconds.
    #[serde(default = "default_batch_max_age_ms")]
    #[schemars(range(min = 0, max = 60_000))]
    pub batch_max_age_ms: i64,
    /// Flushes in flight at once per batcher Pod.
    #[serde(default = "default_max_concurrent_flushes")]
    #[schemars(range(min = 1, max = 64))]
    pub max_concurrent_flushes: i32,
    /// Memory of the writes waiting for a flush per batcher Pod (key + value bytes plus a
    /// fixed overhead per entry); past it writes get RESOURCE_EXHAUSTED at once. Part of
    /// the batcher's memory request.
    #[serde(default = "default_queue_max_bytes")]
    #[schemars(range(min = 4_194_304, max = 68_719_476_736_i64))]
    pub queue_max_bytes: i64,
    /// From this many level-0 files on, the batchers space their flushes (up to 100 ms
    /// apart at twice this count) so batches grow and compaction catches up; writes never
    /// fail for it. 0 never slows down.
    #[serde(default = "default_l0_slowdown_files")]
    #[schemars(range(min = 0, max = 100_000))]
    pub l0_slowdown_files: i32,
    /// Writes wait (up to 2 s, then RESOURCE_EXHAUSTED naming this bound) while level 0
    /// holds this many files, so writers cannot outrun compaction. 0 never stalls.
    #[serde(default = "default_l0_stop_files")]
    #[schemars(range(min = 0, max = 100_000))]
    pub l0_stop_files: i32,
    /// The WAL tier (group commits, held in every index Pod's memory) is flushed by the
    /// batchers into one level-0 file once it holds this many bytes. The flush's memory,
    /// 2 x this, is part of the batcher's memory request.
    #[serde(default = "default_wal_flush_bytes")]
    #[schemars(range(min = 1_048_576, max = 4_294_967_296_i64))]
    pub wal_flush_bytes: i64,
    /// ... or once it holds this many group commits (an index restart reads each back once).
    #[serde(default = "default_wal_flush_files")]
    #[schemars(range(min = 1, max = 100_000))]
    pub wal_flush_files: i32,
    /// Writes wait (up to 2 s, then RESOURCE_EXHAUSTED naming this bound) while the WAL
    /// tier holds this many bytes (its flush fell behind): the bound on what every index
    /// Pod holds in memory, which is part of the index's memory request. Must be 0 (never
    /// stall) or more than `walFlushBytes`.
    #[serde(default = "default_wal_stop_bytes")]
    #[schemars(range(min = 0, max = 68_719_476_736_i64))]
    pub wal_stop_bytes: i64,
    /// PodDisruptionBudget of the batcher Pods.
    #[serde(default)]
    pub disruption_budget: DisruptionBudgetSpec,
}

impl Default for BatcherSpec {
    fn default() -> Self {
        Self {
            replicas: 1,
            resources: None,
            batch_max_bytes: default_batch_max_bytes(),
            batch_max_age_ms: default_batch_max_age_ms(),
            max_concurrent_flushes: default_max_concurrent_flushes(),
            queue_max_bytes: default_queue_max_bytes(),
            l0_slowdown_files: default_l0_slowdown_files(),
            l0_stop_files: default_l0_stop_files(),
            wal_flush_bytes: default_wal_flush_bytes(),
            wal_flush_files: default_wal_flush_files(),
            wal_stop_bytes: default_wal_stop_bytes(),
            disruption_budget: DisruptionBudgetSpec::default(),
        }
    }
}

/// The index (read) tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexSpec {
    /// Number of index Pods.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// CPU/memory requests and limits of the index container. When no memory is given
    /// the operator sizes it from `cacheCapacityBytes`; a memory limit must exceed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Bytes of the index's own local cache (manifest-adjacent footers and hot blocks).
    #[serde(default = "default_index_cache_bytes")]
    #[schemars(range(min = 0, max = 1_099_511_627_776_i64))]
    pub cache_capacity_bytes: i64,
    /// PodDisruptionBudget of the index Pods.
    #[serde(default)]
    pub disruption_budget: DisruptionBudgetSpec,
}

impl Default for IndexSpec {
    fn default() -> Self {
        Self {
            replicas: 1,
            resources: None,
            cache_capacity_bytes: default_index_cache_bytes(),
            disruption_budget: DisruptionBudgetSpec::default(),
        }
    }
}

/// The cache tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Number of cache Pods. Changing it re-spreads objects over the ring (and rolls the index Pods,
    /// which hold the peer list).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// CPU/memory requests and limits of the cache container. When no memory is given
    /// the operator sizes it from `cacheCapacityBytes`; a memory limit must exceed it.
    // Not a CEL rule: the API server prices `quantity()` on an int-or-string map value as
    // unbounded and rejects the CRD, so validate.rs checks it (Degraded/InvalidSpec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Bytes each cache Pod keeps in memory.
    #[serde(default = "default_cache_bytes")]
    #[schemars(range(min = 1_048_576, max = 1_099_511_627_776_i64))]
    pub cache_capacity_bytes: i64,
    /// PodDisruptionBudget of the cache Pods.
    #[serde(default)]
    pub disruption_budget: DisruptionBudgetSpec,
}

impl Default for CacheSpec {
    fn default() -> Self {
        Self {
            replicas: 1,
            resources: None,
            cache_capacity_bytes: default_cache_bytes(),
            disruption_budget: DisruptionBudgetSpec::default(),
        }
    }
}

/// CEL for `pod.labels`: constant-cost `in` checks (a loop over the map would blow the
/// API server's CEL cost budget for an unbounded map).
pub const RESERVED_LABELS_RULE: &str = "!('app.kubernetes.io/name' in self) && !('app.kubernetes.io/instance' in self) && !('app.kubernetes.io/component' in self) && !('app.kubernetes.io/managed-by' in self)";

/// How the operator runs one kind of maintenance Job on a cron schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobScheduleSpec {
    /// Cron schedule in UTC, five fields (`minute hour day-of-month month day-of-week`)
    /// or a macro such as `@hourly`. Default: `*/10 * * * *` for compaction,
    /// `17 * * * *` for purge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        pattern(r"^(@(yearly|annually|monthly|weekly|daily|hourly))$|^(\S+\s+){4}\S+$")
    )]
    pub schedule: Option<String>,
    /// Stop creating scheduled Jobs and, for compaction, debt-driven ones (a running Job is
    /// left alone; manual triggers still run).
    #[serde(default)]
    pub suspend: bool,
    /// A run missed by more than this many seconds (operator down, previous Job still
    /// running) is skipped instead of started late.
    #[serde(default = "default_starting_deadline")]
    #[schemars(range(min = 10, max = 604_800))]
    pub starting_deadline_seconds: i64,
    /// Finished successful Jobs to keep.
    #[serde(default = "default_successful_history")]
    #[schemars(range(min = 0, max = 50))]
    pub successful_jobs_history_limit: i32,
    /// Finished failed Jobs to keep.
    #[serde(default = "default_one")]
    #[schemars(range(min = 0, max = 50))]
    pub failed_jobs_history_limit: i32,
    /// Retries of a failed Job Pod before the Job is marked failed.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 20))]
    pub backoff_limit: i32,
    /// Seconds after which a still-running Job is stopped and marked failed.
    #[serde(default = "default_active_deadline")]
    #[schemars(range(min = 60, max = 604_800))]
    pub active_deadline_seconds: i64,
    /// CPU/memory requests and limits of the Job container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Compaction Jobs: created as soon as the index reports compaction debt (up to
/// `maxConcurrentJobs` at once, each doing one bounded piece of work), with the cron
/// schedule as a backstop.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.maxInputBytes) ? self.maxInputBytes : 1073741824) >= self.levelBaseBytes").message("compaction.maxInputBytes (default 1 GiB) must be at least compaction.levelBaseBytes: an L0 Job reads the base-level files its L0 files overlap, and level-to-level Jobs keep the base level near its target only within that budget"))]
pub struct CompactionSpec {
    #[serde(flatten)]
    pub job: JobScheduleSpec,
    /// Size of the files compaction writes.
    #[serde(default = "default_target_file_bytes")]
    #[schemars(range(min = 65_536, max = 4_294_967_296_i64))]
    pub target_file_bytes: i64,
    /// Create compaction Jobs as soon as the index reports debt (a level-0 file count or a
    /// level size over its target). When false (or while `suspend` is true) only the
    /// schedule and the trigger annotation start Jobs; the debt is still shown in the status.
    #[serde(default = "default_true")]
    pub trigger_on_debt: bool,
    /// Compaction Jobs running at once (debt-driven, scheduled and manual together).
    /// Concurrent Jobs work on disjoint inputs.
    #[serde(default = "default_max_concurrent_jobs")]
    #[schemars(range(min = 1, max = 16))]
    pub max_concurrent_jobs: i32,
    /// Target size of level 1; level N+1's target is `levelSizeRatio` times level N's.
    #[serde(default = "default_level_base_bytes")]
    #[schemars(range(min = 1_048_576, max = 1_099_511_627_776_i64))]
    pub level_base_bytes: i64,
    /// Growth factor between the size targets of adjacent levels.
    #[serde(default = "default_level_size_ratio")]
    #[schemars(range(min = 2, max = 100))]
    pub level_size_ratio: i32,
    /// Level 0 (the files the batchers write, overlapping each other) is due for
    /// compaction once it holds this many files. Shared with the index, which scores the
    /// debt by it.
    #[serde(default = "default_l0_trigger_files")]
    #[schemars(range(min = 1, max = 10_000))]
    pub l0_trigger_files: i32,
    /// Most input bytes one compaction Job merges (the data plane's default is 1 GiB); an
    /// L0 Job reads up to this much of L0 plus the base-level files they overlap. At least
    /// `levelBaseBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1_048_576, max = 1_099_511_627_776_i64))]
    pub max_input_bytes: Option<i64>,
}

/// Purge Jobs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurgeSpec {
    #[serde(flatten)]
    pub job: JobScheduleSpec,
    /// Only objects unreferenced for longer than this are deleted; it must exceed the
    /// longest time a reader holds on to an old manifest.
    #[serde(default = "default_grace")]
    #[schemars(range(min = 60, max = 2_592_000))]
    pub grace_period_seconds: i64,
}

/// Pod settings applied to every data-plane and Job Pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra labels on the Pods. The `app.kubernetes.io/` keys the operator selects on are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(RESERVED_LABELS_RULE).message("pod.labels must not set the app.kubernetes.io name/instance/component/managed-by labels the operator selects on"))]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the Pods (for example for a metrics scraper or a service mesh).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node labels the Pods must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the Pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the Pods. When omitted, the operator prefers spreading each role over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,
    /// ServiceAccount of the Pods (the data plane needs no Kubernetes API access; set this for
    /// cloud identity such as IRSA). Defaults to the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
    /// Pod-level security context, merged over the operator's non-root defaults
    /// (uid/gid 65532, RuntimeDefault seccomp). Running as root is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("(!has(self.runAsNonRoot) || self.runAsNonRoot) && (!has(self.runAsUser) || self.runAsUser != 0)").message("pod.securityContext must not run as root (runAsNonRoot: false or runAsUser: 0)"))]
    pub security_context: Option<PodSecurityContext>,
}

/// Data-plane logging.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    /// `RUST_LOG` filter, e.g. `info` or `info,skyvault::index=debug`.
    #[serde(default = "default_log_level")]
    #[schemars(length(min = 1, max = 512))]
    pub level: String,
    /// Output format.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LoggingSpec {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::Json,
        }
    }
}

/// Log line format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_one() -> i32 {
    1
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}
fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}
fn default_url_key() -> String {
    "url".into()
}
fn default_batch_max_bytes() -> i64 {
    4 * 1024 * 1024
}
fn default_batch_max_age_ms() -> i64 {
    5
}
fn default_max_concurrent_flushes() -> i32 {
    4
}
fn default_queue_max_bytes() -> i64 {
    64 * 1024 * 1024
}
fn default_l0_slowdown_files() -> i32 {
    20
}
fn default_l0_stop_files() -> i32 {
    36
}
fn default_wal_flush_bytes() -> i64 {
    64 * 1024 * 1024
}
fn default_wal_flush_files() -> i32 {
    2048
}
fn default_wal_stop_bytes() -> i64 {
    256 * 1024 * 1024
}
fn default_index_cache_bytes() -> i64 {
    64 * 1024 * 1024
}
fn default_cache_bytes() -> i64 {
    256 * 1024 * 1024
}
fn default_starting_deadline() -> i64 {
    3600
}
fn default_successful_history() -> i32 {
    3
}
fn default_backoff_limit() -> i32 {
    2
}
fn default_active_deadline() -> i64 {
    6 * 3600
}
fn default_target_file_bytes() -> i64 {
    64 * 1024 * 1024
}
fn default_max_concurrent_jobs() -> i32 {
    2
}
fn default_level_base_bytes() -> i64 {
    256 * 1024 * 1024
}
fn default_level_size_ratio() -> i32 {
    10
}
fn default_l0_trigger_files() -> i32 {
    8
}
fn default_grace() -> i64 {
    3600
}
fn default_log_level() -> String {
    "info".into()
}

impl Default for JobScheduleSpec {
    fn default() -> Self {
        Self {
            schedule: None,
            suspend: false,
            starting_deadline_seconds: default_starting_deadline(),
            successful_jobs_history_limit: default_successful_history(),
            failed_jobs_history_limit: 1,
            backoff_limit: default_backoff_limit(),
            active_deadline_seconds: default_active_deadline(),
            resources: None,
        }
    }
}

impl Default for CompactionSpec {
    fn default() -> Self {
        Self {
            job: JobScheduleSpec::default(),
            target_file_bytes: default_target_file_bytes(),
            trigger_on_debt: true,
            max_concurrent_jobs: default_max_concurrent_jobs(),
            level_base_bytes: default_level_base_bytes(),
            level_size_ratio: default_level_size_ratio(),
            l0_trigger_files: default_l0_trigger_files(),
            max_input_bytes: None,
        }
    }
}

impl Default for PurgeSpec {
    fn default() -> Self {
        Self {
            job: JobScheduleSpec::default(),
            grace_period_seconds: default_grace(),
        }
    }
}

/// Default compaction schedule: every 10 minutes.
pub const DEFAULT_COMPACTION_SCHEDULE: &str = "*/10 * * * *";
/// Default purge schedule: hourly, off the top of the hour.
pub const DEFAULT_PURGE_SCHEDULE: &str = "17 * * * *";
