//! The node's images: OCI archives written by `e2e/node/images.sh` from binaries built
//! here (nothing is pulled), tagged by the binaries' content.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::{IMAGE_REGISTRY, NodeImages, NodeOptions, run_checked};
use crate::tools::repo_root;

fn sha256_prefix(files: &[&Path]) -> Result<String> {
    let out = run_checked(
        "sha256sum",
        Command::new("sha256sum").args(files.iter().map(|f| f.as_os_str())),
    )?;
    let all: String = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let out = run_checked(
        "sha256sum",
        Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {all} | sha256sum")),
    )?;
    Ok(out[..12].to_string())
}

pub(super) fn build_images(
    run_dir: &Path,
    options: &NodeOptions,
    pause_bin: &Path,
    coredns_bin: &Path,
) -> Result<NodeImages> {
    let script = repo_root().join("e2e/node/images.sh");
    let tag = sha256_prefix(&[&options.skyvault_bin, &options.operator_bin])?;
    let images = NodeImages {
        skyvault: format!("{IMAGE_REGISTRY}/skyvault:e2e-{tag}"),
        coredns: format!("{IMAGE_REGISTRY}/coredns:e2e"),
        pause: format!("{IMAGE_REGISTRY}/pause:e2e"),
    };
    let build = |name: &str, reference: &str, inputs: &[&Path]| -> Result<()> {
        run_checked(
            &format!("images.sh {name}"),
            Command::new("bash")
                .arg(&script)
                .arg(name)
                .arg(run_dir.join(format!("images/{name}.tar")))
                .arg(reference)
                .args(inputs.iter().map(|p| p.as_os_str())),
        )?;
        Ok(())
    };
    build("pause", &images.pause, &[pause_bin])?;
    build("coredns", &images.coredns, &[coredns_bin])?;
    build(
        "skyvault",
        &images.skyvault,
        &[&options.skyvault_bin, &options.operator_bin],
    )?;
    Ok(images)
}
