//! Each pod's memory, read from its cgroups on this machine (the harness's node: cgroup v1,
//! kubelet's cgroupfs layout under the node's cgroup root). Pods of another cluster are
//! not found there and are left out.

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// Memory of each pod in the namespace: the summed VmRSS and VmHWM (peak) of the
/// processes in its cgroups (v1, kubelet's cgroupfs layout under the node's cgroup root).
pub async fn pod_memory(pods: &Api<Pod>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in pods.list(&ListParams::default()).await?.items {
        let (Some(name), Some(uid)) = (p.metadata.name, p.metadata.uid) else {
            continue;
        };
        let base = "/sys/fs/cgroup/memory/skyvault-e2e/kubepods";
        let dir = ["", "burstable/", "besteffort/"]
            .iter()
            .map(|q| format!("{base}/{q}pod{uid}"))
            .find(|d| std::path::Path::new(d).is_dir());
        let Some(dir) = dir else { continue };
        let mut dirs = vec![std::path::PathBuf::from(&dir)];
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            }
        }
        let kib = |status: &str, field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (mut rss, mut hwm) = (0u64, 0u64);
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                rss += kib(&status, "VmRSS:");
                hwm += kib(&status, "VmHWM:");
            }
        }
        out.push(format!(
            "{name} rss {} MiB peak {} MiB",
            rss >> 10,
            hwm >> 10
        ));
    }
    Ok(out)
}
