//! Values built from small files and rebuilt when the files change: TLS
//! certificate pairs (`tls`) and token files (`auth`). Kubernetes updates a
//! mounted Secret by swapping a symlink, so renewed credentials take effect
//! without a restart.
//!
//! The files are looked at again at most once per [`RELOAD_CHECK`], on use.
//! Contents that do not build (a certificate and key caught between the two
//! writes of a rotation, a malformed tokens file) are refused with a warning,
//! and the last good value stays in use.

use anyhow::Context;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a use may look at the files again.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Builds the value from the files' contents (in the order given).
pub type Build<T> = Box<dyn Fn(&[Vec<u8>]) -> anyhow::Result<T> + Send + Sync>;

pub struct Reloading<T> {
    paths: Vec<PathBuf>,
    build: Build<T>,
    /// Called after each rebuild from changed files (a metric).
    on_reload: fn(),
    state: Mutex<State<T>>,
}

struct State<T> {
    value: Arc<T>,
    /// The contents `value` was built from.
    source: Vec<Vec<u8>>,
    checked: Instant,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl<T> Reloading<T> {
    /// Reads and builds now: a missing file or bad contents fail here, naming the files.
    pub fn load(paths: Vec<PathBuf>, build: Build<T>, on_reload: fn()) -> anyhow::Result<Self> {
        let source = read_all(&paths)?;
        let value = build(&source).with_context(|| format!("in {}", describe(&paths)))?;
        Ok(Reloading {
            paths,
            build,
            on_reload,
            state: Mutex::new(State {
                value: Arc::new(value),
                source,
                checked: Instant::now(),
            }),
        })
    }

    /// The current value: rebuilt first if the files changed since the last look.
    pub fn get(&self) -> Arc<T> {
        let mut state = self.state.lock().expect("reloading lock");
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            self.reload(&mut state);
        }
        state.value.clone()
    }

    fn reload(&self, state: &mut State<T>) {
        let files = describe(&self.paths);
        let source = match read_all(&self.paths) {
            Ok(source) if source != state.source => source,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%files, error = %format!("{e:#}"), "cannot re-read; keeping the loaded contents");
                return;
            }
        };
        match (self.build)(&source) {
            Ok(value) => {
                tracing::info!(%files, "reloaded");
                (self.on_reload)();
                state.value = Arc::new(value);
                state.source = source;
            }
            Err(e) => {
                tracing::warn!(%files, error = %format!("{e:#}"), "changed contents refused; keeping the loaded ones")
            }
        }
    }

    /// Makes the next `get` look at the files (tests: no waiting out the interval).
    #[cfg(test)]
    pub fn look_again(&self) {
        let mut state = self.state.lock().expect("reloading lock");
        state.checked = Instant::now() - RELOAD_CHECK;
    }
}

fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Vec<u8>>> {
    paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect()
}

fn describe(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(" / ")
}
