//! Compaction debt: what the index reports on `GET /lsm`, reading it over HTTP(S), and the
//! pure decisions built on it (how many compaction Jobs to start, the status block, the
//! `AutoCompaction` condition). Only [`fetch_lsm`] touches the network.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};

use crate::crd::{CompactionDebtStatus, CompactionSpec, JobResult, JobRun, LevelDebtStatus};
use crate::l0_jobs::{L0Bounds, l0_jobs};

/// What the index answers on `GET /lsm` (the data plane's planner, one implementation).
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct LsmDebt {
    /// Manifest version the numbers were computed from.
    pub version: u64,
    pub l0_files: u64,
    pub l0_bytes: u64,
    /// Estimated bytes compaction must still rewrite.
    pub pending_bytes: u64,
    /// Highest level score.
    pub score: f64,
    /// The highest score is at least 1.
    pub needs_compaction: bool,
    #[serde(default)]
    pub levels: Vec<LevelDebt>,
    /// The level L0 compacts into (absent from data planes before issue 23).
    #[serde(default)]
    pub l0_output_level: Option<u32>,
    /// L0 file sizes, newest first (the newest 1,024).
    #[serde(default)]
    pub l0_file_bytes: Vec<u64>,
    /// Files of the output level outside L0's key span: what a job into the next level
    /// can take beside an L0 Job.
    #[serde(default)]
    pub l0_output_files_outside_l0: Option<u64>,
}

/// One level in [`LsmDebt`].
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct LevelDebt {
    pub level: u32,
    pub files: u64,
    pub bytes: u64,
    pub target_bytes: u64,
    pub score: f64,
}

/// Longest the operator waits for the index's answer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest `/lsm` body accepted.
const MAX_BODY: usize = 1 << 20;

/// Why the debt could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GET {url}: {reason}")]
pub struct FetchError {
    pub url: String,
    pub reason: String,
}

/// `GET url` and parse the body as [`LsmDebt`], within `timeout`. An `https://` URL is
/// read over TLS, trusting only `ca` (PEM: the SkyVault's `ca.crt`) and checking the
/// certificate against the URL's host.
pub async fn fetch_lsm(
    url: &str,
    ca: Option<&[u8]>,
    timeout: Duration,
) -> Result<LsmDebt, FetchError> {
    let fail = |reason: String| FetchError {
        url: url.to_string(),
        reason,
    };
    match tokio::time::timeout(timeout, get_json(url, ca)).await {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(fail(format!("no answer within {timeout:?}"))),
    }
}

async fn get_json(url: &str, ca: Option<&[u8]>) -> Result<LsmDebt, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => None,
        Some("https") => Some(tls_connector(ca.ok_or(
            "an https:// URL needs the SkyVault's CA (ca.crt of spec.tls.secretName)",
        )?)?),
        _ => return Err("only http:// and https:// URLs are supported".into()),
    };
    let host = uri.host().ok_or("URL has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let Some(tls) = tls else {
        return exchange(tcp, &uri).await;
    };
    let name = ServerName::try_from(host.clone())
        .map_err(|e| format!("{host:?} is not a name a certificate can hold: {e}"))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    exchange(stream, &uri).await
}

/// A TLS client trusting only the certificates of the PEM bundle `ca`.
fn tls_connector(ca: &[u8]) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| format!("the CA bundle is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the CA bundle holds a bad certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the CA bundle holds no certificate".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// One HTTP/1.1 `GET` of `uri` on an open connection.
async fn exchange<Io>(io: Io, uri: &hyper::Uri) -> Result<LsmDebt, String>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or("", |a| a.as_str());
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!("HTTP {status}: {}", text.trim()));
        }
        serde_json::from_slice::<LsmDebt>(&body).map_err(|e| format!("invalid body: {e}"))
    };
    // The connection is driven alongside the exchange; dropping both closes it.
    let mut conn = std::pin::pin!(conn);
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        closed = &mut conn => {
            closed.map_err(|e| format!("connection: {e}"))?;
            exchange.await
        }
    }
}

/// Bounded pieces of work the debt asks for, i.e. compaction Jobs that can do work at once:
/// while level 0 is due, as many L0 Jobs as the picker can run side by side
/// ([`l0_jobs`]: 0 when nothing can be picked, up to 2); per deeper level over its target,
/// one Job per target-size file of excess (each moves about one file down), but on L0's
/// output level only the files outside L0's key span while an L0 Job runs (an L0 Job's
/// claim holds the rest); the last (deepest listed) level never counts. From a data plane
/// that does not report the L0 files: one L0 Job, and at least one Job while
/// `needs_compaction`. `held_l0`: see [`l0_jobs`] (from [`DebtInput::held_l0`]).
pub fn wanted_jobs(debt: &LsmDebt, spec: &CompactionSpec, held_l0: Option<u64>) -> usize {
    if !debt.needs_compaction {
        return 0;
    }
    let file = u64::try_from(spec.target_file_bytes.max(1)).unwrap_or(1);
    // The deepest level is the last one: nothing below to compact into (its target is its
    // own size, so its score is about 1 whenever it holds data).
    let last = debt.levels.iter().map(|l| l.level).max().unwrap_or(0);
    let due = |l: &&LevelDebt| l.score >= 1.0 && (l.level == 0 || l.level < last);
    let l0 = if debt.levels.iter().filter(due).any(|l| l.level == 0) {
        l0_jobs(debt, &L0Bounds::of(spec), held_l0)
    } else {
        Some(0)
    };
    let l0_jobs = l0.unwrap_or(1);
    let mut wanted = l0_jobs;
    for level in debt.levels.iter().filter(due).filter(|l| l.level > 0) {
        let excess = level.bytes.saturating_sub(level.target_bytes);
        let mut jobs = excess.div_ceil(file).max(1);
        if l0_jobs > 0 && Some(level.level) == debt.l0_output_level {
            jobs = jobs.min(debt.l0_output_files_outside_l0.unwrap_or(u64::MAX));
        }
        wanted = wanted.saturating_add(usize::try_from(jobs).unwrap_or(usize::MAX));
    }
    if debt.l0_output_level.is_some() {
        wanted
    } else {
        wanted.max(1)
    }
}

/// After an idle Job that recorded no LSM shape (created by an older operator), no debt Job
/// is started for this long.
pub const IDLE_HOLD: SignedDuration = SignedDuration::from_secs(30);
/// After a Job found nothing to pick (exit 3), no debt Job starts while the LSM keeps the
/// shape that Job was created for (the picker is a function of the files: it would find
/// nothing again), for at most this long (a backstop for a change the fingerprint misses).
pub const NOTHING_TO_DO_HOLD: SignedDuration = SignedDuration::from_secs(600);
/// After a Job found its inputs claimed (exit 4): as for nothing to pick, but at most this
/// long: the claim of a Job that died lapses after its 60 s TTL without changing the shape.
pub const INPUTS_CLAIMED_HOLD: SignedDuration = SignedDuration::from_secs(90);
/// After a failed compaction Job no debt Job is started for this long, so a broken
/// compaction does not become a Job storm (the schedule and triggers still run). A Job
/// that ran into its active deadline does not hold: it says nothing about a new Job.
pub const FAILURE_HOLD: SignedDuration = SignedDuration::from_secs(300);

/// Until when debt Jobs wait, judged by the Job that finished last for the reason it ended
/// with: `shape_then` is the LSM shape that Job was created for, `now` the current reading.
pub fn hold_until(
    last_finished: Option<&JobRun>,
    shape_then: Option<&str>,
    now: Option<&LsmDebt>,
) -> Option<Timestamp> {
    let run = last_finished?;
    let finished = run.completion_time.as_ref()?.0;
    let changed = match (shape_then, now) {
        (Some(then), Some(d)) => shape(d) != then,
        _ => false,
    };
    let hold = match run.result {
        JobResult::Succeeded | JobResult::Running => return None,
        JobResult::Failed if ran_out_of_time(run) => return None,
        JobResult::Failed => FAILURE_HOLD,
        _ if changed => return None,
        _ if shape_then.is_none() => IDLE_HOLD,
        JobResult::NothingToDo => NOTHING_TO_DO_HOLD,
        JobResult::InputsClaimed => INPUTS_CLAIMED_HOLD,
    };
    finished.checked_add(hold).ok()
}

/// Whether a failed Job was ended by its `activeDeadlineSeconds`.
fn ran_out_of_time(run: &JobRun) -> bool {
    run.message
        .as_deref()
        .is_some_and(|m| m.starts_with("DeadlineExceeded"))
}

/// A fingerprint of the LSM's files: files and bytes per level as the index reports them
/// (not the manifest version, which every group commit moves, nor the WAL tier, which no
/// compaction Job picks). Recorded on debt Jobs.
pub fn shape(debt: &LsmDebt) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for l in &debt.levels {
        hash.update(format!("{}:{}:{};", l.level, l.files, l.bytes));
    }
    hash.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Everything [`debt_jobs`] decides on.
#[derive(Clone, Copy, Debug)]
pub struct DebtInput<'a> {
    /// Not [`switched_off`].
    pub enabled: bool,
    /// The debt, when the index answered.
    pub debt: Option<&'a LsmDebt>,
    /// `spec.compaction`: the Jobs' bounds.
    pub spec: &'a CompactionSpec,
    /// `spec.compaction.maxConcurrentJobs`.
    pub max_concurrent: usize,
    /// Compaction Jobs running (of any origin), including one created in this reconcile.
    pub running: usize,
    /// While debt Jobs run: the L0 file count when the newest of them was created
    /// (`JobHistory::running_l0_files`).
    pub held_l0: Option<u64>,
    /// From [`hold_until`].
    pub hold_until: Option<Timestamp>,
    pub now: Timestamp,
}

/// What the debt asks for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebtDecision {
    /// Nothing: no debt, not known, or switched off.
    Idle,
    /// Start this many Jobs.
    Create(usize),
    /// Debt, but every wanted piece of work has a Job running (or the limit is reached).
    Saturated,
    /// Debt, but the last Job found nothing to do or failed: wait until then.
    Hold(Timestamp),
}

/// How many debt Jobs to start: the wanted pieces of work, capped by the concurrency limit,
/// minus the Jobs already running.
pub fn debt_jobs(input: DebtInput) -> DebtDecision {
    let Some(debt) = input.debt.filter(|_| input.enabled) else {
        return DebtDecision::Idle;
    };
    let wanted = wanted_jobs(debt, input.spec, input.held_l0);
    if wanted == 0 {
        return DebtDecision::Idle;
    }
    if let Some(until) = input.hold_until.filter(|u| *u > input.now) {
        return DebtDecision::Hold(until);
    }
    match wanted
        .min(input.max_concurrent)
        .saturating_sub(input.running)
    {
        0 => DebtDecision::Saturated,
        n => DebtDecision::Create(n),
    }
}

/// Free slot numbers for debt Job names this minute (`NAME-compact-<minute>-d<slot>`),
/// skipping names that exist.
pub fn free_slots(existing: &[String], name_of: impl Fn(u32) -> String, count: usize) -> Vec<u32> {
    (0..MAX_SLOTS)
        .filter(|slot| !existing.contains(&name_of(*slot)))
        .take(count)
        .collect()
}

/// Debt Jobs per minute at most (the slot keeps names within 63 characters).
pub const MAX_SLOTS: u32 = 100;

/// Bytes as `1.5Gi`, `340Mi`, `12Ki`, `512B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "Ki", "Mi", "Gi", "Ti"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn int(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// One line: `score 2.10, 1.3Gi pending` (or `none` below every threshold).
pub fn summary(debt: &LsmDebt) -> String {
    if debt.needs_compaction {
        format!(
            "score {:.2}, {} pending",
            debt.score,
            human_bytes(debt.pending_bytes)
        )
    } else {
        format!("none (score {:.2})", debt.score)
    }
}

/// The status block for a reading taken at `now`.
pub fn status(debt: &LsmDebt, now: Timestamp) -> CompactionDebtStatus {
    CompactionDebtStatus {
        l0_files: int(debt.l0_files),
        l0_bytes: int(debt.l0_bytes),
        pending_bytes: int(debt.pending_bytes),
        score: round2(debt.score),
        needs_compaction: debt.needs_compaction,
        levels: debt
            .levels
            .iter()
            .map(|l| LevelDebtStatus {
                level: i32::try_from(l.level).unwrap_or(i32::MAX),
                files: int(l.files),
                bytes: int(l.bytes),
                target_bytes: int(l.target_bytes),
                score: round2(l.score),
            })
            .collect(),
        manifest_version: int(debt.version),
        observed_at: Time(now),
        summary: summary(debt),
    }
}

/// Condition type telling whether compaction follows the debt.
pub const AUTO_COMPACTION: &str = "AutoCompaction";

/// Reasons of the `AutoCompaction` condition.
pub mod reason {
    /// The index answered; Jobs start when a score reaches 1.
    pub const DEBT_OBSERVED: &str = "DebtObserved";
    /// `spec.compaction.triggerOnDebt` is false or `suspend` is true.
    pub const DISABLED: &str = "Disabled";
    /// The index has ready Pods but did not answer: the schedule is the only driver.
    pub const INDEX_UNREACHABLE: &str = "IndexUnreachable";
    /// No index Pod is ready yet (a store starting up): expected, no Warning.
    pub const INDEX_NOT_READY: &str = "IndexNotReady";
}

/// Why debt-driven Jobs are switched off, if they are: `triggerOnDebt: false`, or
/// `suspend: true` (which stops every automatic compaction; triggers still run).
pub fn switched_off(spec: &CompactionSpec) -> Option<&'static str> {
    if !spec.trigger_on_debt {
        Some("spec.compaction.triggerOnDebt is false")
    } else if spec.job.suspend {
        Some("spec.compaction.suspend is true")
    } else {
        None
    }
}

/// `(status, reason, message)` of the `AutoCompaction` condition; `off` from
/// [`switched_off`].
pub fn condition(
    off: Option<&str>,
    reading: Result<&LsmDebt, &FetchError>,
    index_ready: bool,
) -> (bool, &'static str, String) {
    let fallback = "compaction Jobs start on the schedule (and the trigger annotation) only";
    match (off, reading) {
        (Some(why), _) => (
            false,
            reason::DISABLED,
            format!("{why}: no debt-driven Jobs"),
        ),
        (None, Ok(debt)) => (
            true,
            reason::DEBT_OBSERVED,
            format!(
                "index reports {} level-0 files, {} pending, highest score {:.2}; Jobs start when a score reaches 1",
                debt.l0_files,
                human_bytes(debt.pending_bytes),
                debt.score
            ),
        ),
        (None, Err(e)) if index_ready => (
            false,
            reason::INDEX_UNREACHABLE,
            format!("cannot read compaction debt: {e}; {fallback}"),
        ),
        (None, Err(e)) => (
            false,
            reason::INDEX_NOT_READY,
            format!("no index Pod is ready ({e}); {fallback}"),
        ),
    }
}

#[cfg(test)]
#[path = "debt_tests.rs"]
mod tests;
