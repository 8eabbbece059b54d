//! Starts a distributed data plane on loopback for `just bench`: PostgreSQL and
//! an S3 server (moto) from the e2e harness, `skyvault migrate`, then one
//! batcher, one cache replica and one index reading through it. Once every
//! role is ready it prints shell `export` lines (endpoints, each role's HTTP
//! address and PID, in the order batcher, index, cache; the metadata and
//! object-store settings for `skyvault compact`) and keeps running
//! until Ctrl-C/SIGTERM, then stops everything. `SKYVAULT_BIN` selects the
//! `skyvault` binary.

use anyhow::Result;
use skyvault_e2e::services::dataplane::Deps;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let deps = Deps::start();
    deps.migrate();
    // The batcher's flush age as `skyvault standalone` has it by default (the
    // harness shortens it for tests).
    let batcher = deps.spawn("batcher", "batcher", &[("SKYVAULT_BATCH_MAX_AGE_MS", "5")]);
    let cache = deps.spawn("cache", "cache", &[]);
    let index = deps.spawn("index", "index", &[("SKYVAULT_CACHE_PEERS", &cache.grpc)]);
    let roles = [batcher, index, cache];
    for role in &roles {
        role.ready().await;
    }
    let [batcher, index, _] = &roles;
    let http: Vec<&str> = roles.iter().map(|r| r.http.as_str()).collect();
    let pids: Vec<String> = roles.iter().map(|r| r.process.pid().to_string()).collect();
    println!("export SKYVAULT_BENCH_BATCHER={}", batcher.grpc);
    println!("export SKYVAULT_BENCH_INDEX={}", index.grpc);
    // Where the compaction debt is (GET /lsm), as the operator reads it.
    println!("export SKYVAULT_BENCH_INDEX_HTTP={}", index.http);
    println!("export SKYVAULT_BENCH_HTTP='{}'", http.join(" "));
    println!("export SKYVAULT_BENCH_PIDS='{}'", pids.join(" "));
    // What `skyvault compact` (the Kubernetes Job's command) needs to reach the same store.
    println!("export SKYVAULT_METADATA_URL={}", deps.pg.url());
    println!("export SKYVAULT_OBJECT_STORE_URL={}", deps.s3.url("data"));
    for (k, v) in deps.s3.env() {
        println!("export {k}={v}");
    }
    for role in &roles {
        let log = role.process.log_path().display();
        println!("# {}: log {log}", role.process.name());
    }
    println!("export SKYVAULT_BENCH_READY=1");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    // Roles first, then PostgreSQL and the S3 server they talk to.
    drop(roles);
    drop(deps);
    Ok(())
}
