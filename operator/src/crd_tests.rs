//! The generated CRD: its shape, that it is structural and documented, that its CEL rules
//! accept good specs and reject bad ones (evaluated with kube-cel, no API server), and that
//! the committed copies match.

use super::*;
use crate::crd::*;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn object(spec: Value) -> Value {
    json!({
        "apiVersion": "skyvault.io/v1alpha1",
        "kind": "SkyVault",
        "metadata": {"name": "vault", "namespace": "prod"},
        "spec": spec,
    })
}

fn minimal_spec() -> Value {
    json!({
        "image": "skyvault:1",
        "objectStore": {"bucket": "data-bucket"},
        "database": {"urlSecret": {"name": "pg"}},
    })
}

/// CEL errors of creating `obj` (or updating `old` to `obj`).
fn cel_errors(obj: &Value, old: Option<&Value>) -> Vec<String> {
    match kube_cel::validate(&schema(), obj, old) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn committed_crd_files_match_the_operator_output() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for path in [
        "crds/skyvault.io_skyvaults.yaml",
        "charts/skyvault-operator/crds/skyvault.io_skyvaults.yaml",
    ] {
        let committed = std::fs::read_to_string(root.join(path)).unwrap_or_default();
        assert!(committed == crd_yaml(), "{path} is stale: run `just crds`");
    }
}

#[test]
fn names_scope_and_subresources() {
    let crd = crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("skyvaults.skyvault.io"));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["sv".to_string()]));
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.served && v.storage);
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        vec![
            "Ready",
            "Batcher",
            "Index",
            "Cache",
            "Last Compaction",
            "L0 Files",
            "Debt",
            "Reason",
            "Age"
        ]
    );
}

/// Walk every schema node with its path.
fn walk<'a>(node: &'a Value, path: String, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(&path, node);
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(v, format!("{path}.{k}"), visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, format!("{path}[]"), visit);
    }
    if let Some(extra) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk(extra, format!("{path}{{}}"), visit);
    }
}

#[test]
fn descriptions_are_reflowed_but_keep_paragraphs() {
    let s = schema();
    let schedule = s["properties"]["spec"]["properties"]["compaction"]["properties"]["schedule"]["description"].as_str().unwrap();
    assert!(schedule.starts_with("Cron schedule in UTC, five fields (`minute hour day-of-month month day-of-week`) or a macro"), "{schedule}");
    let mut v = json!({"description": "a\nb\n\nc", "x": [{"description": "d\ne"}]});
    join_description_lines(&mut v);
    assert_eq!(
        v,
        json!({"description": "a b\n\nc", "x": [{"description": "d e"}]})
    );
}

#[test]
fn schema_is_structural() {
    let mut bad = vec![];
    walk(&schema(), String::new(), &mut |path, node| {
        let typed = node.get("type").is_some()
            || node.get("x-kubernetes-int-or-string").is_some()
            || node.get("x-kubernetes-preserve-unknown-fields").is_some();
        let forbidden = ["$ref", "oneOf", "anyOf", "allOf", "not"]
            .iter()
            .any(|k| node.get(*k).is_some());
        if !typed || forbidden {
            bad.push(path.to_string());
        }
    });
    assert!(bad.is_empty(), "non-structural nodes: {bad:?}");
}

#[test]
fn every_spec_and_status_field_is_described() {
    let mut missing = vec![];
    walk(&schema(), String::new(), &mut |path, node| {
        let field = path.rsplit('.').next().unwrap_or("");
        let is_field = path.starts_with(".spec") || path.starts_with(".status");
        let container = field.ends_with("[]") || field.ends_with("{}");
        if is_field && !container && node.get("description").is_none() {
            missing.push(path.to_string());
        }
    });
    assert!(
        missing.is_empty(),
        "fields without description: {missing:?}"
    );
}

#[test]
fn defaults_fill_the_tiers() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    assert_eq!(spec["batcher"]["default"]["replicas"], 1);
    assert_eq!(spec["cache"]["default"]["cacheCapacityBytes"], 268_435_456);
    assert_eq!(
        spec["objectStore"]["properties"]["region"]["default"],
        "us-east-1"
    );
    assert_eq!(spec["batcher"]["properties"]["replicas"]["minimum"], 1.0);
    let batcher = &spec["batcher"]["default"];
    assert_eq!(batcher["l0SlowdownFiles"], 20);
    assert_eq!(batcher["l0StopFiles"], 36);
    assert_eq!(batcher["walFlushBytes"], 67_108_864);
    assert_eq!(batcher["walFlushFiles"], 2048);
    assert_eq!(batcher["walStopBytes"], 268_435_456);
    let required = s["properties"]["spec"]["required"].as_array().unwrap();
    for field in ["image", "objectStore", "database"] {
        assert!(required.contains(&json!(field)), "{field}");
    }
}

#[test]
fn minimal_and_full_specs_pass_cel() {
    assert_eq!(
        cel_errors(&object(minimal_spec()), None),
        Vec::<String>::new()
    );
    let mut full = minimal_spec();
    full["cache"] = json!({"replicas": 3, "cacheCapacityBytes": 1_073_741_824_i64, "resources": {"limits": {"memory": "2Gi"}}});
    // Memory below the cache passes CEL: the operator rejects it (validate.rs), not the schema.
    full["index"] = json!({"resources": {"limits": {"memory": 1_073_741_824_i64}}});
    full["objectStore"]["credentialsSecret"] = json!({"name": "s3"});
    full["pod"] = json!({"labels": {"team": "storage"}, "securityContext": {"runAsUser": 1000}});
    assert_eq!(cel_errors(&object(full), None), Vec::<String>::new());
}

#[test]
fn cel_rejects_root_and_reserved_labels() {
    let mut spec = minimal_spec();
    spec["pod"] = json!({"labels": {"app.kubernetes.io/component": "x"}, "securityContext": {"runAsNonRoot": false}});
    let errors = cel_errors(&object(spec), None);
    assert!(
        errors.iter().any(|e| e.contains("pod.labels must not set")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("must not run as root")),
        "{errors:?}"
    );
}

#[test]
fn cel_rejects_same_key_for_both_credentials() {
    let mut spec = minimal_spec();
    spec["objectStore"]["credentialsSecret"] =
        json!({"name": "s3", "accessKeyIdKey": "k", "secretAccessKeyKey": "k"});
    let errors = cel_errors(&object(spec), None);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("must name different keys")),
        "{errors:?}"
    );
}

#[test]
fn cel_requires_the_wal_stop_above_the_wal_flush_or_off() {
    let mut spec = minimal_spec();
    // The defaults (256 MiB over 64 MiB) pass; so does 0 (never stall) under any flush.
    spec["batcher"] = json!({"replicas": 2});
    assert_eq!(
        cel_errors(&object(spec.clone()), None),
        Vec::<String>::new()
    );
    spec["batcher"] = json!({"walFlushBytes": 1_073_741_824_i64, "walStopBytes": 0});
    assert_eq!(
        cel_errors(&object(spec.clone()), None),
        Vec::<String>::new()
    );
    // A larger flush than the defaulted stop, or a stop equal to the flush, is refused.
    for batcher in [
        json!({"walFlushBytes": 268_435_456_i64}),
        json!({"walFlushBytes": 8_388_608, "walStopBytes": 8_388_608}),
    ] {
        spec["batcher"] = batcher;
        let errors = cel_errors(&object(spec.clone()), None);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("walStopBytes must be 0 or more than batcher.walFlushBytes")),
            "{errors:?}"
        );
    }
}

#[test]
fn cel_orders_the_l0_triggers() {
    let mut spec = minimal_spec();
    // Defaults (trigger 8 < slowdown 20 < stop 36) pass; so does either bound off.
    for (batcher, compaction) in [
        (json!({"replicas": 1}), json!({})),
        (json!({"l0SlowdownFiles": 0, "l0StopFiles": 12}), json!({})),
        (
            json!({"l0SlowdownFiles": 50, "l0StopFiles": 0}),
            json!({"l0TriggerFiles": 60}),
        ),
        (
            json!({"l0SlowdownFiles": 10, "l0StopFiles": 11}),
            json!({"l0TriggerFiles": 10}),
        ),
    ] {
        spec["batcher"] = batcher.clone();
        spec["compaction"] = compaction.clone();
        let errors = cel_errors(&object(spec.clone()), None);
        assert_eq!(errors, Vec::<String>::new(), "{batcher} {compaction}");
    }
    let refused = [
        (
            json!({"l0SlowdownFiles": 36}),
            json!({}),
            "l0SlowdownFiles must be below",
        ),
        (
            json!({"l0SlowdownFiles": 40, "l0StopFiles": 30}),
            json!({}),
            "l0SlowdownFiles must be below",
        ),
        (
            json!({"l0StopFiles": 8, "l0SlowdownFiles": 4}),
            json!({}),
            "l0StopFiles must be 0 (off) or more than",
        ),
        (
            json!({}),
            json!({"l0TriggerFiles": 40}),
            "l0StopFiles must be 0 (off) or more than",
        ),
    ];
    for (batcher, compaction, message) in refused {
        spec["batcher"] = batcher.clone();
        spec["compaction"] = compaction.clone();
        let errors = cel_errors(&object(spec.clone()), None);
        assert!(
            errors.iter().any(|e| e.contains(message)),
            "{batcher} {compaction}: {errors:?}"
        );
    }
}

#[test]
fn cel_requires_the_job_budget_to_hold_the_base_level() {
    let mut spec = minimal_spec();
    for ok in [
        json!({"levelBaseBytes": 1_073_741_824_i64}),
        json!({"levelBaseBytes": 8_388_608, "maxInputBytes": 8_388_608}),
    ] {
        spec["compaction"] = ok;
        assert_eq!(
            cel_errors(&object(spec.clone()), None),
            Vec::<String>::new()
        );
    }
    // Below the base level's target, given or by the data plane's 1 GiB default.
    for refused in [
        json!({"levelBaseBytes": 2_147_483_648_i64}),
        json!({"levelBaseBytes": 268_435_456, "maxInputBytes": 16_777_216}),
    ] {
        spec["compaction"] = refused;
        let errors = cel_errors(&object(spec.clone()), None);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("maxInputBytes (default 1 GiB) must be at least")),
            "{errors:?}"
        );
    }
}

#[test]
fn cel_rejects_long_or_non_dns_names() {
    let mut obj = object(minimal_spec());
    obj["metadata"]["name"] = json!("a".repeat(41));
    assert!(
        cel_errors(&obj, None)
            .iter()
            .any(|e| e.contains("at most 40"))
    );
    obj["metadata"]["name"] = json!("1vault");
    assert!(
        cel_errors(&obj, None)
            .iter()
            .any(|e| e.contains("DNS-1035"))
    );
}

#[test]
fn bucket_and_prefix_are_immutable() {
    let old = object(minimal_spec());
    let mut moved = minimal_spec();
    moved["objectStore"]["bucket"] = json!("other-bucket");
    let errors = cel_errors(&object(moved), Some(&old));
    assert!(
        errors.iter().any(|e| e.contains("bucket is immutable")),
        "{errors:?}"
    );
    let mut prefixed = minimal_spec();
    prefixed["objectStore"]["prefix"] = json!("elsewhere/");
    let errors = cel_errors(&object(prefixed), Some(&old));
    assert!(
        errors.iter().any(|e| e.contains("prefix is immutable")),
        "{errors:?}"
    );
    let mut scaled = minimal_spec();
    scaled["batcher"] = json!({"replicas": 3});
    assert_eq!(
        cel_errors(&object(scaled), Some(&old)),
        Vec::<String>::new()
    );
}

#[test]
fn defaulted_spec_round_trips_through_serde() {
    let sv: SkyVault = serde_json::from_value(object(minimal_spec())).unwrap();
    assert_eq!(sv.spec.cache.cache_capacity_bytes, 268_435_456);
    assert_eq!(sv.spec.compaction.target_file_bytes, 67_108_864);
    assert_eq!(sv.spec.object_store.credentials_secret, None);
    let back = serde_json::to_value(&sv).unwrap();
    assert!(!back.to_string().contains("null"), "{back}");
}
