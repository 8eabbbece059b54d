//! SkyVault Kubernetes operator: the `SkyVault` CRD, pure builders from spec to child
//! objects, schedule and status computation, and the controller that applies them.

pub mod configmap;
pub mod crd;
pub mod crd_status;
pub mod jobs;
pub mod maintenance;
pub mod naming;
pub mod pdb;
pub mod pod;
pub mod schedule;
pub mod service;
pub mod statefulset;

#[cfg(test)]
mod testutil;
