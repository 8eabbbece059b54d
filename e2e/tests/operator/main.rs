//! The real `skyvault-operator` binary against a real API server, running as
//! the chart's ServiceAccount with only the chart's RBAC. No kubelet or
//! workload controllers run: the tests write StatefulSet and Job status
//! themselves, and kube-controller-manager runs only the garbage collector.
//!
//! Helpers live in `skyvault_e2e::operator_checks` and `skyvault_e2e::fake_index`; the tests
//! are grouped by concept in the modules below (one test binary: one control plane).

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;
use skyvault_e2e::fake_index::FakeIndex;
use skyvault_e2e::operator_checks::*;
use skyvault_e2e::operator_env::{OperatorEnv, example_skyvault};
use skyvault_e2e::{holds_for, wait_for};

mod children;
mod debt;
mod flag_bounds;
mod jobs;
mod leader;
mod security;
mod status;
mod upgrade;

/// Fails unless the test namespace keeps exactly `n` compaction Jobs for `time`.
async fn compaction_jobs_stay(
    env: &OperatorEnv,
    what: &str,
    n: usize,
    time: Duration,
) -> Result<()> {
    holds_for(what, time, || async {
        let jobs = jobs_of_kind(env, "compact").await?.len();
        ensure!(jobs == n, "{jobs} compaction Jobs");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())
}
