//! Rendering and linting the Helm chart with the pinned `helm` binary.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::manifests::parse_yaml_documents;
use crate::tools::{Tool, repo_root, tool_path};

/// `charts/skyvault-operator`.
pub fn operator_chart_dir() -> PathBuf {
    repo_root().join("charts/skyvault-operator")
}

/// Runs the pinned `helm` with `args`; returns its stdout.
pub fn helm(args: &[&str]) -> Result<String> {
    let bin = tool_path(Tool::Helm)?;
    let out = Command::new(&bin)
        .args(args)
        .output()
        .with_context(|| format!("run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "helm {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `helm lint --strict` on a chart directory; returns its output.
pub fn lint(chart: &std::path::Path) -> Result<String> {
    helm(&["lint", "--strict", &chart.display().to_string()])
}

/// `helm template` of a chart with `--set` values; returns the documents.
pub fn template(
    chart: &std::path::Path,
    release: &str,
    namespace: &str,
    set: &[&str],
) -> Result<Vec<serde_json::Value>> {
    let chart = chart.display().to_string();
    let mut args = vec![
        "template",
        release,
        &chart,
        "--namespace",
        namespace,
        "--include-crds",
    ];
    for s in set {
        args.push("--set");
        args.push(s);
    }
    parse_yaml_documents(&helm(&args)?)
}

/// The rendered objects of the given kinds.
pub fn of_kinds<'a>(
    docs: &'a [serde_json::Value],
    kinds: &'a [&str],
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    docs.iter()
        .filter(move |d| kinds.iter().any(|k| d["kind"] == *k))
}
