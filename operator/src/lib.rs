//! SkyVault Kubernetes operator: the `SkyVault` CRD, pure builders from spec to child
//! objects, schedule and status computation, and the controller that applies them.

pub mod certificates;
pub mod children;
pub mod configmap;
pub mod controller;
pub mod crd;
pub mod crd_output;
pub mod crd_security;
pub mod crd_status;
pub mod debt;
pub mod job_memory;
pub mod jobs;
pub mod l0_jobs;
pub mod leader;
pub mod maintenance;
pub mod memory;
pub mod metrics;
pub mod naming;
pub mod network_policy;
pub mod pdb;
pub mod pod;
pub mod schedule;
pub mod security;
pub mod service;
pub mod statefulset;
pub mod status;
pub mod upgrade;
pub mod validate;

#[cfg(test)]
mod testutil;
