//! The user's journey on a cluster whose pods really run (`e2e/tests/node_journey.rs`):
//! on the harness's own one-node cluster ([`crate::node`]) or, with
//! `SKYVAULT_E2E_USE_EXISTING_CLUSTER=1`, on any cluster in `KUBECONFIG` (kind, k3d,
//! minikube, or a node started by `skyvault-e2e-cluster --node`).
//!
//! - [`setup`]: where the journey runs (namespaces, images, how pods reach the database
//!   and S3 outside the cluster), `helm install` of the operator, clean-up.
//! - [`access`]: how the test's gRPC clients reach the Services (ClusterIP on the own node,
//!   a port-forward through the API server elsewhere).
//! - [`clients`]: the writer and the read-your-writes reader under load, and the final check
//!   that every acked write reads back.
//! - [`rollout`]: Ready, rolled StatefulSets, replaced pods.
//! - [`jobs`]: compaction/purge Jobs started by the trigger annotations.
//! - [`memory`]: each pod's memory, read from its cgroups (own node only).
//! - [`network`]: the operator's NetworkPolicies enforced, seen from probe pods (a cache
//!   refuses a pod that is not an index pod; `spec.networkPolicy.clients` selects callers).
//! - [`upgrade`]: the order of an image roll (migrate Job first, readers before writers).

pub mod access;
pub mod clients;
pub mod jobs;
pub mod memory;
pub mod network;
pub mod rollout;
pub mod setup;
pub mod upgrade;

use std::time::Duration;

/// The SkyVault's name.
pub const SV_NAME: &str = "journey";
/// Deadline of each gRPC call the clients make.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Pods starting on a loaded 2-core machine (image already local).
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest run of failed calls a client may see while a pod goes away: its
/// connection breaks, the next call reconnects to a pod that is still ready
/// (docs/operations.md, "Clients during pod restarts").
pub const RETRY_WINDOW: Duration = Duration::from_secs(30);
