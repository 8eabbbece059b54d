use super::*;
use crate::testutil::sample;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;

fn fields(sv: &SkyVault) -> Vec<String> {
    validate_spec(sv).into_iter().map(|e| e.field).collect()
}

#[test]
fn sample_is_valid() {
    assert!(validate_spec(&sample()).is_empty());
    assert_eq!(spec_problem(&[]), None);
}

#[test]
fn bad_cron_names_the_field() {
    let mut sv = sample();
    sv.spec.compaction.job.schedule = Some("*/10 * * *".into());
    sv.spec.purge.job.schedule = Some("0 25 * * *".into());
    assert_eq!(
        fields(&sv),
        vec!["spec.compaction.schedule", "spec.purge.schedule"]
    );
    let problem = spec_problem(&validate_spec(&sv)).unwrap();
    assert_eq!(problem.reason, "InvalidSpec");
    assert!(
        problem.message.starts_with("spec.compaction.schedule: "),
        "{}",
        problem.message
    );
}

#[test]
fn names_that_cannot_name_children_are_rejected() {
    for bad in ["9vault", "Vault", "vault-", "v.ault", &"a".repeat(41)] {
        let mut sv = sample();
        sv.metadata.name = Some(bad.to_string());
        assert_eq!(fields(&sv), vec!["metadata.name"], "{bad}");
    }
    let mut sv = sample();
    sv.metadata.name = Some("a".repeat(40));
    assert!(validate_spec(&sv).is_empty());
}

#[test]
fn wal_stop_must_be_off_or_above_the_wal_flush() {
    let mut sv = sample();
    sv.spec.batcher.wal_flush_bytes = 256 << 20;
    assert_eq!(fields(&sv), vec!["spec.batcher.walStopBytes"]);
    sv.spec.batcher.wal_stop_bytes = 0;
    assert!(validate_spec(&sv).is_empty());
    sv.spec.batcher.wal_stop_bytes = (256 << 20) + 1;
    assert!(validate_spec(&sv).is_empty());
}

#[test]
fn memory_limit_must_exceed_cache() {
    let mut sv = sample();
    sv.spec.cache.cache_capacity_bytes = 1 << 30;
    sv.spec.cache.resources =
        Some(serde_json::from_value(serde_json::json!({"limits": {"memory": "1Gi"}})).unwrap());
    assert_eq!(fields(&sv), vec!["spec.cache.resources.limits.memory"]);
    sv.spec.cache.resources =
        Some(serde_json::from_value(serde_json::json!({"limits": {"memory": "1.5Gi"}})).unwrap());
    assert!(validate_spec(&sv).is_empty());
    sv.spec.index.resources =
        Some(serde_json::from_value(serde_json::json!({"limits": {"memory": "lots"}})).unwrap());
    assert_eq!(fields(&sv), vec!["spec.index.resources.limits.memory"]);
}

#[test]
fn reserved_labels_and_root_are_rejected() {
    let mut sv = sample();
    sv.spec
        .pod
        .labels
        .insert("app.kubernetes.io/instance".into(), "x".into());
    sv.spec.pod.security_context =
        Some(serde_json::from_value(serde_json::json!({"runAsUser": 0})).unwrap());
    assert_eq!(
        fields(&sv),
        vec!["spec.pod.labels", "spec.pod.securityContext"]
    );
}

#[test]
fn quantities_parse_to_bytes() {
    assert_eq!(parse_bytes("512Mi"), Some(512 << 20));
    assert_eq!(parse_bytes("1.5Gi"), Some(3 << 29));
    assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
    assert_eq!(parse_bytes("1e3"), Some(1000));
    assert_eq!(parse_bytes("123"), Some(123));
    assert_eq!(parse_bytes("1500m"), Some(1));
    assert_eq!(parse_bytes("12Xi"), None);
    assert_eq!(parse_bytes(""), None);
}

fn secret(keys: &[&str]) -> Secret {
    Secret {
        data: Some(
            keys.iter()
                .map(|k| (k.to_string(), ByteString(b"v".to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

#[test]
fn secret_refs_list_every_referenced_key() {
    let refs = secret_refs(&sample());
    assert_eq!(
        refs[0],
        (
            "spec.database.urlSecret",
            "pg".to_string(),
            vec!["url".to_string()]
        )
    );
    assert_eq!(
        refs[1].2,
        vec![
            "AWS_ACCESS_KEY_ID".to_string(),
            "AWS_SECRET_ACCESS_KEY".to_string()
        ]
    );
    let mut sv = sample();
    sv.spec.object_store.credentials_secret = None;
    assert_eq!(secret_refs(&sv).len(), 1);
}

#[test]
fn missing_secret_or_key_is_a_problem_naming_the_field() {
    let keys = vec!["url".to_string()];
    let err = check_secret("spec.database.urlSecret", "pg", &keys, None).unwrap_err();
    assert_eq!(err.reason, "SecretNotFound");
    assert_eq!(
        err.message,
        "spec.database.urlSecret: Secret \"pg\" not found"
    );
    let err = check_secret(
        "spec.database.urlSecret",
        "pg",
        &keys,
        Some(&secret(&["password"])),
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "spec.database.urlSecret: Secret \"pg\" has no key \"url\""
    );
    assert!(
        check_secret(
            "spec.database.urlSecret",
            "pg",
            &keys,
            Some(&secret(&["url"]))
        )
        .is_ok()
    );
}

#[test]
fn secrets_digest_follows_the_referenced_values_only() {
    let sv = sample();
    let refs = secret_refs(&sv);
    let with = |url: &str, extra: &str| {
        let db = Secret {
            data: Some(BTreeMap::from([
                ("url".to_string(), ByteString(url.as_bytes().to_vec())),
                ("unused".to_string(), ByteString(extra.as_bytes().to_vec())),
            ])),
            ..Secret::default()
        };
        let s3 = secret(&["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
        secrets_digest(&refs, &[&db, &s3])
    };
    let a = with("postgres://a", "x");
    assert_eq!(a, with("postgres://a", "x"), "stable");
    assert_eq!(
        a,
        with("postgres://a", "y"),
        "unreferenced keys do not count"
    );
    assert_ne!(a, with("postgres://b", "x"), "a changed URL changes it");
    assert!(!a.contains("postgres"), "a digest, not the value");
    // ... and so the Pods' checksum, which rolls them.
    let (x, y) = (
        crate::children::build_with_secrets(&sv, &a),
        crate::children::build_with_secrets(&sv, &with("postgres://b", "x")),
    );
    assert_ne!(x.config_checksum, y.config_checksum);
    assert_eq!(
        crate::children::build(&sv).config_checksum,
        crate::children::build_with_secrets(&sv, "").config_checksum
    );
}
