use super::*;
use crate::testutil::ts;
use std::net::SocketAddr;

const MIB: u64 = 1024 * 1024;

/// The body the data plane serves (the contract in issue 11).
const BODY: &str = r#"{"version":42,"l0_files":12,"l0_bytes":50331648,"pending_bytes":1395864371,
  "score":3.0,"needs_compaction":true,
  "levels":[{"level":0,"files":12,"bytes":50331648,"target_bytes":0,"score":3.0},
            {"level":1,"files":6,"bytes":402653184,"target_bytes":268435456,"score":1.5},
            {"level":2,"files":20,"bytes":1342177280,"target_bytes":2684354560,"score":0.5},
            {"level":6,"files":400,"bytes":26843545600,"target_bytes":26843545600,"score":1.0}]}"#;

fn parsed() -> LsmDebt {
    serde_json::from_str(BODY).unwrap()
}

fn level(level: u32, bytes: u64, target: u64) -> LevelDebt {
    LevelDebt {
        level,
        files: 1,
        bytes,
        target_bytes: target,
        score: bytes as f64 / target.max(1) as f64,
    }
}

/// The last level as the data plane reports it: its target is its own size.
fn last_level() -> LevelDebt {
    level(6, 25 * 1024 * MIB, 25 * 1024 * MIB)
}

/// A reading with `levels` plus the last level, scored like the data plane (the last level
/// never counts).
fn debt(mut levels: Vec<LevelDebt>) -> LsmDebt {
    let score = levels.iter().map(|l| l.score).fold(0.0, f64::max);
    levels.push(last_level());
    LsmDebt {
        version: 1,
        l0_files: 0,
        l0_bytes: 0,
        pending_bytes: 0,
        score,
        needs_compaction: score >= 1.0,
        levels,
        // An older data plane: no L0 files listed.
        l0_output_level: None,
        l0_file_bytes: vec![],
        l0_output_files_outside_l0: None,
    }
}

/// The default compaction settings (64 MiB files, L0 trigger 8, ratio 10, 1 GiB budget).
static SPEC: std::sync::LazyLock<CompactionSpec> =
    std::sync::LazyLock::new(CompactionSpec::default);

#[test]
fn parses_the_contract_body() {
    let d = parsed();
    assert_eq!(d.version, 42);
    assert_eq!(d.l0_files, 12);
    assert!(d.needs_compaction);
    assert_eq!(d.levels.len(), 4);
    assert_eq!(d.levels[1].target_bytes, 256 * MIB);
    // Fields the operator does not know yet are ignored.
    let extra = BODY.replacen("{", r#"{"future_field":[1,2],"#, 1);
    assert_eq!(serde_json::from_str::<LsmDebt>(&extra).unwrap(), d);
}

#[test]
fn wanted_jobs_from_an_older_data_plane_one_for_level_0_and_one_per_excess_file_below() {
    // L0 over its trigger: one Job (L0 files overlap, one merge at a time).
    let mut l0 = level(0, 10, 1);
    l0.score = 3.0;
    assert_eq!(wanted_jobs(&debt(vec![l0.clone()]), &SPEC, None), 1);
    // L1 over its 256 MiB target by 136 MiB: three 64 MiB files to move down.
    let l1 = level(1, 392 * MIB, 256 * MIB);
    assert_eq!(wanted_jobs(&debt(vec![l1.clone()]), &SPEC, None), 3);
    // Both, and a level under target adds nothing.
    let l2 = level(2, MIB, 2560 * MIB);
    assert_eq!(wanted_jobs(&debt(vec![l0, l1, l2.clone()]), &SPEC, None), 4);
    // No debt, no Jobs.
    assert_eq!(wanted_jobs(&debt(vec![l2]), &SPEC, None), 0);
    // Debt without a level over 1 in the list (e.g. level 0 not listed): still one.
    let mut odd = debt(vec![]);
    odd.needs_compaction = true;
    assert_eq!(wanted_jobs(&odd, &SPEC, None), 1);
    // From the contract body: L0 (1) + L1 128 MiB over target (2); the last level at
    // score 1 does not count.
    assert_eq!(wanted_jobs(&parsed(), &SPEC, None), 3);
    assert_eq!(last_level().score, 1.0);
    let mut only_last = debt(vec![]);
    only_last.needs_compaction = false;
    assert_eq!(wanted_jobs(&only_last, &SPEC, None), 0);
}

#[test]
fn beside_l0_jobs_the_output_level_counts_only_files_outside_l0s_span() {
    // L0 due (9 files of 64 MiB: one Job takes them all), L1 three files over its target.
    let mut l0 = level(0, 9 * 64 * MIB, 1);
    l0.score = 9.0 / 8.0;
    let mut d = debt(vec![l0, level(1, 448 * MIB, 256 * MIB)]);
    d.l0_files = 9;
    d.l0_bytes = 9 * 64 * MIB;
    d.l0_file_bytes = vec![64 * MIB; 9];
    d.l0_output_level = Some(1);
    d.l0_output_files_outside_l0 = Some(1);
    assert_eq!(wanted_jobs(&d, &SPEC, None), 1 + 1);
    // L0's span covers L1 (random keys): L1 Jobs would only find their inputs claimed.
    d.l0_output_files_outside_l0 = Some(0);
    assert_eq!(wanted_jobs(&d, &SPEC, None), 1);
    // L0 due but nothing to pick (going down expensive, no run of small files, under twice
    // the trigger): no L0 Job, and L1's Jobs are not held back by one.
    d.levels[1].bytes = 3 << 30;
    d.levels[1].score = 12.0;
    d.l0_file_bytes = vec![20 * MIB; 9];
    d.l0_bytes = 9 * 20 * MIB;
    assert_eq!(wanted_jobs(&d, &SPEC, None), 44);
}

fn input(d: Option<&LsmDebt>, running: usize) -> DebtInput<'_> {
    DebtInput {
        enabled: true,
        debt: d,
        spec: &SPEC,
        max_concurrent: 2,
        running,
        held_l0: None,
        hold_until: None,
        now: ts("2030-01-01T00:00:00Z"),
    }
}

#[test]
fn debt_jobs_fill_free_slots_up_to_the_wanted_work() {
    let d = parsed(); // wants 3
    assert_eq!(debt_jobs(input(Some(&d), 0)), DebtDecision::Create(2));
    assert_eq!(debt_jobs(input(Some(&d), 1)), DebtDecision::Create(1));
    assert_eq!(debt_jobs(input(Some(&d), 2)), DebtDecision::Saturated);
    assert_eq!(debt_jobs(input(Some(&d), 5)), DebtDecision::Saturated);
    let mut wide = input(Some(&d), 1);
    wide.max_concurrent = 16;
    assert_eq!(
        debt_jobs(wide),
        DebtDecision::Create(2),
        "3 wanted, 1 running"
    );
    // Level 0 alone: a second Job would only find the inputs claimed.
    let mut l0 = level(0, 1, 1);
    l0.score = 1.0;
    let only_l0 = debt(vec![l0]);
    assert_eq!(debt_jobs(input(Some(&only_l0), 1)), DebtDecision::Saturated);
}

#[test]
fn no_debt_jobs_without_debt_a_reading_or_permission() {
    let d = parsed();
    assert_eq!(
        debt_jobs(input(None, 0)),
        DebtDecision::Idle,
        "index silent"
    );
    let mut off = input(Some(&d), 0);
    off.enabled = false;
    assert_eq!(debt_jobs(off), DebtDecision::Idle, "triggerOnDebt false");
    let calm = debt(vec![level(1, MIB, 256 * MIB)]);
    assert_eq!(debt_jobs(input(Some(&calm), 0)), DebtDecision::Idle);
}

#[test]
fn a_hold_delays_debt_jobs_until_it_passes() {
    let d = parsed();
    let mut i = input(Some(&d), 0);
    i.hold_until = Some(ts("2030-01-01T00:00:30Z"));
    assert_eq!(debt_jobs(i), DebtDecision::Hold(ts("2030-01-01T00:00:30Z")));
    i.now = ts("2030-01-01T00:00:31Z");
    assert_eq!(debt_jobs(i), DebtDecision::Create(2));
}

fn finished(result: JobResult, at: &str) -> JobRun {
    JobRun {
        job_name: "vault-compact-1".into(),
        scheduled_time: None,
        start_time: None,
        completion_time: Some(Time(ts(at))),
        result,
        message: None,
        manual: false,
        debt: true,
    }
}

#[test]
fn holds_follow_the_last_finished_job_and_its_reason() {
    let at = "2030-01-01T00:00:00Z";
    let d = parsed();
    let then = shape(&d);
    let hold =
        |result, shape: Option<&str>| hold_until(Some(&finished(result, at)), shape, Some(&d));
    assert_eq!(hold_until(None, None, Some(&d)), None);
    assert_eq!(hold(JobResult::Succeeded, Some(&then)), None);
    // Idle on the LSM as it still is: nothing to pick holds long, claimed inputs until a
    // dead Job's claim would have lapsed.
    assert_eq!(
        hold(JobResult::NothingToDo, Some(&then)),
        Some(ts("2030-01-01T00:10:00Z"))
    );
    assert_eq!(
        hold(JobResult::InputsClaimed, Some(&then)),
        Some(ts("2030-01-01T00:01:30Z"))
    );
    // The files changed since (a flush, a swap): no hold at all.
    let mut flushed = d.clone();
    flushed.levels[0].files += 1;
    flushed.version += 100;
    assert_ne!(shape(&flushed), then);
    for idle in [JobResult::NothingToDo, JobResult::InputsClaimed] {
        let run = finished(idle, at);
        assert_eq!(hold_until(Some(&run), Some(&then), Some(&flushed)), None);
    }
    // Group commits move the version, not the shape.
    let mut committed = d.clone();
    committed.version += 100;
    assert_eq!(shape(&committed), then);
    // A Job from an older operator recorded no shape: the short hold as before.
    assert_eq!(
        hold(JobResult::NothingToDo, None),
        Some(ts("2030-01-01T00:00:30Z"))
    );
    // A crash holds longer whatever the shape; running into the deadline does not hold.
    assert_eq!(
        hold(JobResult::Failed, Some(&then)),
        Some(ts("2030-01-01T00:05:00Z"))
    );
    let mut late = finished(JobResult::Failed, at);
    late.message = Some("DeadlineExceeded: Job was active longer than specified deadline".into());
    assert_eq!(hold_until(Some(&late), Some(&then), Some(&d)), None);
}

#[test]
fn free_slots_skip_existing_names() {
    let name = |s: u32| format!("v-compact-1-d{s}");
    let existing = vec![name(0), name(2), "v-compact-1".to_string()];
    assert_eq!(free_slots(&existing, name, 3), vec![1, 3, 4]);
    let all: Vec<String> = (0..MAX_SLOTS).map(name).collect();
    assert!(free_slots(&all, name, 1).is_empty());
}

#[test]
fn status_summary_and_bytes_read_well() {
    assert_eq!(human_bytes(512), "512B");
    assert_eq!(human_bytes(1536), "1.5Ki");
    assert_eq!(human_bytes(340 * MIB), "340Mi");
    assert_eq!(human_bytes(1_395_864_371), "1.3Gi");
    let s = status(&parsed(), ts("2030-01-01T00:00:00Z"));
    assert_eq!(s.l0_files, 12);
    assert_eq!(s.pending_bytes, 1_395_864_371);
    assert_eq!(s.manifest_version, 42);
    assert_eq!(s.levels.len(), 4);
    assert_eq!(s.levels[1].score, 1.5);
    assert_eq!(s.summary, "score 3.00, 1.3Gi pending");
    assert_eq!(s.observed_at, Time(ts("2030-01-01T00:00:00Z")));
    let mut calm = parsed();
    calm.needs_compaction = false;
    calm.score = 0.123;
    let s = status(&calm, ts("2030-01-01T00:00:00Z"));
    assert_eq!(s.summary, "none (score 0.12)");
    assert_eq!(s.score, 0.12, "rounded, so equal readings write no status");
}

#[test]
fn condition_names_the_fallback() {
    let d = parsed();
    let err = FetchError {
        url: "http://v-index.prod.svc:9090/lsm".into(),
        reason: "connect: connection refused".into(),
    };
    let (ok, reason, msg) = condition(None, Ok(&d), true);
    assert!(ok);
    assert_eq!(reason, reason::DEBT_OBSERVED);
    assert!(msg.contains("12 level-0 files"), "{msg}");
    let (ok, reason, msg) = condition(None, Err(&err), true);
    assert!(!ok);
    assert_eq!(reason, reason::INDEX_UNREACHABLE);
    assert!(
        msg.contains("connection refused") && msg.contains("schedule"),
        "{msg}"
    );
    let (_, reason, _) = condition(None, Err(&err), false);
    assert_eq!(reason, reason::INDEX_NOT_READY);
    let (ok, reason, msg) = condition(Some("spec.compaction.suspend is true"), Ok(&d), true);
    assert!(!ok);
    assert_eq!(reason, reason::DISABLED);
    assert!(msg.contains("suspend"), "{msg}");
}

#[test]
fn suspend_or_the_switch_turns_debt_jobs_off() {
    let mut spec = CompactionSpec::default();
    assert_eq!(switched_off(&spec), None);
    spec.job.suspend = true;
    assert_eq!(switched_off(&spec), Some("spec.compaction.suspend is true"));
    spec.trigger_on_debt = false;
    assert_eq!(
        switched_off(&spec),
        Some("spec.compaction.triggerOnDebt is false")
    );
}

// ---------- fetch_lsm against a local HTTP server ----------

async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, task)
}

#[tokio::test]
async fn fetch_reads_the_index_answer() {
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/lsm",
            get(|| async { ([("content-type", "application/json")], BODY) }),
        )
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready") }),
        )
        .route("/garbage", get(|| async { "{\"version\":" }));
    let (addr, task) = serve(router).await;
    let got = fetch_lsm(&format!("http://{addr}/lsm"), None, FETCH_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(got, parsed());

    let err = fetch_lsm(&format!("http://{addr}/broken"), None, FETCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        err.reason.contains("503") && err.reason.contains("not ready"),
        "{err}"
    );
    let err = fetch_lsm(&format!("http://{addr}/garbage"), None, FETCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.reason.contains("invalid body"), "{err}");
    let err = fetch_lsm(&format!("http://{addr}/missing"), None, FETCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.reason.contains("404"), "{err}");
    task.abort();
}

#[tokio::test]
async fn fetch_fails_fast_on_refused_silent_or_bad_urls() {
    // Nothing listens: refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = fetch_lsm(&format!("http://{addr}/lsm"), None, FETCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.reason.contains("connect"), "{err}");
    assert_eq!(err.url, format!("http://{addr}/lsm"));

    // Accepts but never answers: the timeout ends it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let started = std::time::Instant::now();
    let err = fetch_lsm(
        &format!("http://{addr}/lsm"),
        None,
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(err.reason.contains("no answer within"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();

    let err = fetch_lsm("ftp://example.invalid/lsm", None, FETCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.reason.contains("only http:// and https://"), "{err}");
    // TLS without the SkyVault's CA is refused before any connection.
    let err = fetch_lsm("https://example.invalid/lsm", None, FETCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.reason.contains("needs the SkyVault's CA"), "{err}");
    let err = fetch_lsm("https://example.invalid/lsm", Some(b"junk"), FETCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.reason.contains("no certificate"), "{err}");
}

#[test]
fn the_default_url_is_the_index_services_http_port() {
    use crate::naming::{self, DEFAULT_LSM_URL_TEMPLATE, HTTP_PORT, Role};
    let sv = crate::testutil::sample();
    assert_eq!(
        naming::lsm_url(DEFAULT_LSM_URL_TEMPLATE, &sv),
        format!("http://vault-index.prod.svc:{HTTP_PORT}/lsm")
    );
    // That Service exists and carries the port under the name the container uses.
    let svc = crate::service::client_service(&sv, Role::Index);
    assert_eq!(svc.metadata.name.as_deref(), Some("vault-index"));
    assert!(
        svc.spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .any(|p| p.port == HTTP_PORT && p.name.as_deref() == Some("http"))
    );
    assert_eq!(
        naming::lsm_url("http://127.0.0.1:1/{namespace}/{name}", &sv),
        "http://127.0.0.1:1/prod/vault"
    );
    // A SkyVault serving TLS is read over TLS (its HTTP listener speaks nothing else).
    let mut tls = sv.clone();
    tls.spec.tls = Some(crate::crd_security::TlsSpec {
        secret_name: Some("vault-tls".into()),
        require_client_certificates: false,
    });
    assert_eq!(
        naming::lsm_url(DEFAULT_LSM_URL_TEMPLATE, &tls),
        format!("https://vault-index.prod.svc:{HTTP_PORT}/lsm")
    );
}
