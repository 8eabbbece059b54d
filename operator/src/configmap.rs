//! The shared, non-secret configuration: one ConfigMap mounted with envFrom by every
//! container. Its checksum goes on the Pod templates so a change rolls the Pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use crate::crd::SkyVault;
use crate::naming::{self, GRPC_PORT, HTTP_PORT};

/// Environment shared by all roles and Jobs (role-specific values go in the container env).
pub fn config_data(sv: &SkyVault) -> BTreeMap<String, String> {
    let spec = &sv.spec;
    let store = &spec.object_store;
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        data.insert(k.to_string(), v);
    };
    // Every address of the Pod, IPv4 and IPv6 (one dual-stack socket; the binary falls back
    // to 0.0.0.0 where IPv6 is off): IPv6-only clusters work too.
    put("SKYVAULT_GRPC_ADDR", format!("[::]:{GRPC_PORT}"));
    put("SKYVAULT_HTTP_ADDR", format!("[::]:{HTTP_PORT}"));
    put(
        "SKYVAULT_OBJECT_STORE_URL",
        object_store_url(&store.bucket, &store.prefix),
    );
    put("SKYVAULT_S3_REGION", store.region.clone());
    put("SKYVAULT_S3_PATH_STYLE", store.path_style.to_string());
    if let Some(endpoint) = &store.endpoint {
        put("SKYVAULT_S3_ENDPOINT", endpoint.clone());
    }
    put(
        "SKYVAULT_BATCH_MAX_BYTES",
        spec.batcher.batch_max_bytes.to_string(),
    );
    put(
        "SKYVAULT_BATCH_MAX_AGE_MS",
        spec.batcher.batch_max_age_ms.to_string(),
    );
    put(
        "SKYVAULT_BATCH_MAX_CONCURRENT_FLUSHES",
        spec.batcher.max_concurrent_flushes.to_string(),
    );
    put(
        "SKYVAULT_BATCH_QUEUE_MAX_BYTES",
        spec.batcher.queue_max_bytes.to_string(),
    );
    // Write back-pressure and the WAL tier: the batchers stall and flush by them (the index
    // parses them too, as every role reading `Tuning` does).
    put(
        "SKYVAULT_L0_SLOWDOWN_FILES",
        spec.batcher.l0_slowdown_files.to_string(),
    );
    put(
        "SKYVAULT_L0_STOP_FILES",
        spec.batcher.l0_stop_files.to_string(),
    );
    put(
        "SKYVAULT_WAL_FLUSH_BYTES",
        spec.batcher.wal_flush_bytes.to_string(),
    );
    put(
        "SKYVAULT_WAL_FLUSH_FILES",
        spec.batcher.wal_flush_files.to_string(),
    );
    put(
        "SKYVAULT_WAL_STOP_BYTES",
        spec.batcher.wal_stop_bytes.to_string(),
    );
    put(
        "SKYVAULT_COMPACT_TARGET_FILE_BYTES",
        spec.compaction.target_file_bytes.to_string(),
    );
    // The level targets are shared: Jobs compact by them and the index scores its debt
    // (GET /lsm) by them, so both must agree.
    put(
        "SKYVAULT_LEVEL_BASE_BYTES",
        spec.compaction.level_base_bytes.to_string(),
    );
    put(
        "SKYVAULT_LEVEL_SIZE_RATIO",
        spec.compaction.level_size_ratio.to_string(),
    );
    put(
        "SKYVAULT_L0_TRIGGER_FILES",
        spec.compaction.l0_trigger_files.to_string(),
    );
    put(
        "SKYVAULT_PURGE_GRACE_SECS",
        spec.purge.grace_period_seconds.to_string(),
    );
    put("RUST_LOG", spec.logging.level.clone());
    put(
        "SKYVAULT_LOG_FORMAT",
        spec.logging.format.as_str().to_string(),
    );
    data
}

/// `s3://BUCKET/PREFIX`, without a doubled or trailing-only slash.
pub fn object_store_url(bucket: &str, prefix: &str) -> String {
    let prefix = prefix.trim_start_matches('/');
    if prefix.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    }
}

/// The ConfigMap `NAME-config`.
pub fn config_map(sv: &SkyVault) -> ConfigMap {
    ConfigMap {
        metadata: naming::child_meta(sv, naming::config_name(sv), "config"),
        data: Some(config_data(sv)),
        ..ConfigMap::default()
    }
}

/// Hex SHA-256 over the sorted key/value pairs; stable across runs and platforms.
pub fn checksum(data: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in data {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::sample;

    #[test]
    fn holds_every_shared_setting() {
        let mut sv = sample();
        sv.spec.object_store.endpoint = Some("http://minio:9000".into());
        sv.spec.object_store.path_style = true;
        sv.spec.batcher.batch_max_bytes = 1 << 20;
        let d = config_data(&sv);
        assert_eq!(d["SKYVAULT_OBJECT_STORE_URL"], "s3://data-bucket/prod/");
        assert_eq!(d["SKYVAULT_S3_ENDPOINT"], "http://minio:9000");
        assert_eq!(d["SKYVAULT_S3_PATH_STYLE"], "true");
        assert_eq!(d["SKYVAULT_S3_REGION"], "us-east-1");
        assert_eq!(d["SKYVAULT_BATCH_MAX_BYTES"], "1048576");
        assert_eq!(d["SKYVAULT_BATCH_MAX_AGE_MS"], "5");
        assert_eq!(d["SKYVAULT_BATCH_MAX_CONCURRENT_FLUSHES"], "4");
        assert_eq!(d["SKYVAULT_BATCH_QUEUE_MAX_BYTES"], "67108864");
        assert_eq!(d["SKYVAULT_L0_SLOWDOWN_FILES"], "20");
        assert_eq!(d["SKYVAULT_L0_STOP_FILES"], "36");
        assert_eq!(d["SKYVAULT_WAL_FLUSH_BYTES"], "67108864");
        assert_eq!(d["SKYVAULT_WAL_FLUSH_FILES"], "2048");
        assert_eq!(d["SKYVAULT_WAL_STOP_BYTES"], "268435456");
        assert_eq!(d["SKYVAULT_COMPACT_TARGET_FILE_BYTES"], "67108864");
        assert_eq!(d["SKYVAULT_LEVEL_BASE_BYTES"], "268435456");
        assert_eq!(d["SKYVAULT_LEVEL_SIZE_RATIO"], "10");
        assert_eq!(d["SKYVAULT_L0_TRIGGER_FILES"], "8");
        assert_eq!(d["SKYVAULT_PURGE_GRACE_SECS"], "3600");
        assert_eq!(d["SKYVAULT_GRPC_ADDR"], "[::]:50051");
        assert_eq!(d["SKYVAULT_HTTP_ADDR"], "[::]:9090");
        assert_eq!(d["RUST_LOG"], "info");
        assert_eq!(d["SKYVAULT_LOG_FORMAT"], "json");
    }

    #[test]
    fn never_holds_secrets_or_role_specific_values() {
        let d = config_data(&sample());
        for key in d.keys() {
            assert!(!key.starts_with("AWS_"), "{key}");
            assert_ne!(key, "SKYVAULT_METADATA_URL");
            assert_ne!(key, "SKYVAULT_CACHE_PEERS");
            assert_ne!(key, "SKYVAULT_CACHE_CAPACITY_BYTES");
        }
        assert!(
            !d.contains_key("SKYVAULT_S3_ENDPOINT"),
            "no endpoint set, none written"
        );
    }

    #[test]
    fn object_store_url_joins_bucket_and_prefix() {
        assert_eq!(object_store_url("b", ""), "s3://b");
        assert_eq!(object_store_url("b", "p"), "s3://b/p");
        assert_eq!(object_store_url("b", "p/q/"), "s3://b/p/q/");
    }

    #[test]
    fn checksum_changes_with_any_value_and_is_stable() {
        let sv = sample();
        let a = checksum(&config_data(&sv));
        assert_eq!(a, checksum(&config_data(&sv)));
        assert_eq!(a.len(), 64);
        let mut changed = sv.clone();
        changed.spec.batcher.batch_max_age_ms = 6;
        assert_ne!(a, checksum(&config_data(&changed)));
        // Key/value boundaries matter: "ab"="c" differs from "a"="bc".
        let x = BTreeMap::from([("ab".to_string(), "c".to_string())]);
        let y = BTreeMap::from([("a".to_string(), "bc".to_string())]);
        assert_ne!(checksum(&x), checksum(&y));
    }

    #[test]
    fn config_map_is_owned_and_labelled() {
        let cm = config_map(&sample());
        assert_eq!(cm.metadata.name.as_deref(), Some("vault-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("prod"));
        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "SkyVault");
        assert_eq!(owner.controller, Some(true));
        let labels = cm.metadata.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "skyvault-operator");
        assert_eq!(labels["app.kubernetes.io/instance"], "vault");
    }
}
