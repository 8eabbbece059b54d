//! Harness for SkyVault's end-to-end tests: starts real components (etcd,
//! kube-apiserver, kube-controller-manager, the operator) on loopback and
//! cleans them up afterwards, even when a test panics.
//!
//! Kubernetes binaries are built from pinned Go modules by
//! `e2e/controlplane/build.sh` and cached outside the repo (see [`tools`]).

pub mod certs;
pub mod chaos;
pub mod cluster;
pub mod controlplane;
pub mod fake_index;
pub mod helm;
pub mod journey;
pub mod kubeconfig;
pub mod manifests;
pub mod node;
pub mod operator;
pub mod operator_checks;
pub mod operator_env;
pub mod process;
pub mod services;
pub mod tools;
pub mod wait;

pub use cluster::{TestCluster, TestNamespace};
pub use controlplane::{ControlPlane, ControlPlaneOptions};
pub use wait::{holds_for, wait_for};
