//! Security, with real parts: PostgreSQL over TLS, `skyvault` role processes
//! serving TLS and checking tokens, and the store identity (docs/security.md).
//! One PostgreSQL server with `ssl=on` and one S3 server for the whole binary.

use skyvault_e2e::certs::TestCa;
use skyvault_e2e::process::http_get;
use skyvault_e2e::services::PostgresServer;
use skyvault_e2e::services::dataplane::Deps;
use std::sync::OnceLock;
use std::time::Duration;

struct Fixture {
    deps: Deps,
    ca: TestCa,
}

/// The PostgreSQL certificate names `localhost` only: a URL naming
/// 127.0.0.1 reaches the same server under a name the certificate lacks.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = TestCa::new("skyvault test CA").unwrap();
        let leaf = ca.issue(&["localhost"]).unwrap();
        let pg = PostgresServer::start_with_tls(Some(&leaf)).unwrap();
        let deps = Deps::start_with(pg);
        ca.write(deps.dir(), "ca.crt").unwrap();
        TestCa::new("some other CA")
            .unwrap()
            .write(deps.dir(), "other-ca.crt")
            .unwrap();
        Fixture { deps, ca }
    })
}

fn pg_url(host: &str, query: &str) -> String {
    let f = fixture();
    format!(
        "postgres://skyvault@{host}:{}/skyvault?{query}",
        f.deps.pg.port()
    )
}

fn ca_file(name: &str) -> String {
    fixture().deps.dir().join(name).display().to_string()
}

async fn open(url: &str) -> Result<(), String> {
    skyvault::meta::open_url(url)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn postgres_verify_full_connects_and_bad_tls_settings_fail_precisely() {
    let ca = ca_file("ca.crt");
    open(&pg_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .expect("verify-full with the right CA and host name");
    open(&pg_url(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .expect("verify-ca with the right CA");
    open(&pg_url("127.0.0.1", "sslmode=require"))
        .await
        .expect("require encrypts without checking the certificate");

    let other = ca_file("other-ca.crt");
    let wrong_ca = open(&pg_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ))
    .await
    .unwrap_err();
    assert!(
        wrong_ca.contains("TLS to the metadata database failed")
            && wrong_ca.contains("invalid peer certificate"),
        "{wrong_ca}"
    );
    let wrong_host = open(&pg_url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();
    assert!(
        wrong_host.contains("TLS to the metadata database failed")
            && wrong_host.contains("not valid for name"),
        "{wrong_host}"
    );
}

#[tokio::test]
async fn postgres_without_tls_fails_sslmode_require_precisely() {
    let plain = PostgresServer::start().unwrap();
    let url = format!("{}?sslmode=require", plain.url());
    let err = open(&url).await.unwrap_err();
    assert!(
        err.contains("TLS to the metadata database failed") && err.contains("does not support TLS"),
        "{err}"
    );
}

/// A role whose database TLS fails stays up, not ready, and says why; the
/// one-shot `migrate` exits non-zero with the same reason.
#[tokio::test]
async fn a_role_with_a_wrong_database_ca_is_not_ready_and_says_why() {
    let f = fixture();
    let url = pg_url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            ca_file("other-ca.crt")
        ),
    );
    let out = f
        .deps
        .command(&["migrate"])
        .env("SKYVAULT_METADATA_URL", &url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("TLS to the metadata database failed"),
        "{stderr}"
    );

    let role = f.deps.spawn(
        "index",
        "index-wrong-ca",
        &[("SKYVAULT_METADATA_URL", &url)],
    );
    let port: u16 = role.http.rsplit_once(':').unwrap().1.parse().unwrap();
    skyvault_e2e::wait_for(
        "the TLS error in the index's log",
        Duration::from_secs(30),
        || async {
            role.process.ensure_running()?;
            anyhow::ensure!(
                role.process
                    .log_tail(50)
                    .contains("TLS to the metadata database failed")
            );
            Ok(())
        },
    )
    .await
    .unwrap();
    let (code, _) = http_get(port, "/readyz").await.unwrap();
    assert_eq!(code, 503, "an index without its database is not ready");
    let _ = &f.ca;
}
