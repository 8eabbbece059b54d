//! Finding (or building) the external binaries the tests run.
//!
//! Lookup order for each tool:
//! 1. an explicit path in `SKYVAULT_<TOOL>` (e.g. `SKYVAULT_KUBE_APISERVER`);
//! 2. `$KUBEBUILDER_ASSETS/<tool>` (the envtest convention);
//! 3. `<tool>` on `PATH`;
//! 4. the version-keyed cache filled by `e2e/controlplane/build.sh`, which builds
//!    from the Go modules pinned under `e2e/controlplane/` on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tool {
    KubeApiserver,
    KubeControllerManager,
    Etcd,
    Helm,
    // The one-node cluster's (crate::node).
    KubeScheduler,
    KubeProxy,
    /// Its network policy controller enforces NetworkPolicies on the node.
    KubeRouter,
    Kubelet,
    Coredns,
    Crictl,
    Pause,
}

impl Tool {
    pub fn binary_name(self) -> &'static str {
        match self {
            Tool::KubeApiserver => "kube-apiserver",
            Tool::KubeControllerManager => "kube-controller-manager",
            Tool::Etcd => "etcd",
            Tool::Helm => "helm",
            Tool::KubeScheduler => "kube-scheduler",
            Tool::KubeProxy => "kube-proxy",
            Tool::KubeRouter => "kube-router",
            Tool::Kubelet => "kubelet",
            Tool::Coredns => "coredns",
            Tool::Crictl => "crictl",
            Tool::Pause => "pause",
        }
    }

    /// The environment variable that names this tool's binary explicitly.
    pub fn env_var(self) -> String {
        format!(
            "SKYVAULT_{}",
            self.binary_name().replace('-', "_").to_uppercase()
        )
    }
}

/// The repository root (the parent of the `e2e` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e crate has a parent directory")
        .to_path_buf()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_without_building(tool: Tool) -> Result<Option<PathBuf>> {
    let name = tool.binary_name();
    if let Some(explicit) = std::env::var_os(tool.env_var()) {
        let p = PathBuf::from(explicit);
        if !is_executable(&p) {
            bail!(
                "{}={} is not an executable file",
                tool.env_var(),
                p.display()
            );
        }
        return Ok(Some(p));
    }
    if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") {
        let p = Path::new(&assets).join(name);
        if is_executable(&p) {
            return Ok(Some(p));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if is_executable(&p) {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

/// Paths of the given tools, building the missing ones with `build.sh` (one
/// invocation for all of them; the script serialises concurrent builds).
pub fn tool_paths(tools: &[Tool]) -> Result<Vec<PathBuf>> {
    static RESOLVED: Mutex<Option<HashMap<Tool, PathBuf>>> = Mutex::new(None);
    let mut resolved = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
    let resolved = resolved.get_or_insert_with(HashMap::new);

    let mut missing = Vec::new();
    for &tool in tools {
        if resolved.contains_key(&tool) {
            continue;
        }
        match find_without_building(tool)? {
            Some(p) => {
                resolved.insert(tool, p);
            }
            None => missing.push(tool),
        }
    }
    if !missing.is_empty() {
        let script = repo_root().join("e2e/controlplane/build.sh");
        let names: Vec<&str> = missing.iter().map(|t| t.binary_name()).collect();
        eprintln!(
            "e2e: {} not on PATH; getting them from {} (builds on first use, cached afterwards)",
            names.join(", "),
            script.display()
        );
        let out = Command::new("bash")
            .arg(&script)
            .args(&names)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("run {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed: {}",
                script.display(),
                names.join(" "),
                out.status
            );
        }
        let stdout = String::from_utf8(out.stdout)?;
        for line in stdout.lines() {
            let Some((name, path)) = line.split_once('=') else {
                continue;
            };
            if let Some(&tool) = missing.iter().find(|t| t.binary_name() == name) {
                resolved.insert(tool, PathBuf::from(path));
            }
        }
    }
    tools
        .iter()
        .map(|t| {
            resolved
                .get(t)
                .cloned()
                .with_context(|| format!("build.sh did not report a path for {}", t.binary_name()))
        })
        .collect()
}

/// Path of one tool (see [`tool_paths`]).
pub fn tool_path(tool: Tool) -> Result<PathBuf> {
    Ok(tool_paths(&[tool])?.remove(0))
}
