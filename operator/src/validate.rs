//! Checks the API server cannot do: cron syntax, referenced Secrets and their keys. The
//! schema's own rules (ranges, name length, memory vs cache, WAL stop above
//! WAL flush, no root) are repeated here so
//! an old CRD or a cluster without CEL still never gets half-applied children.

use k8s_openapi::api::core::v1::Secret;

use crate::crd::{MAX_NAME_LEN, SkyVault};
use crate::jobs::JobKind;
use crate::schedule::Schedule;
use crate::status::{Problem, reason};

/// A field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every problem in the spec, in field order; empty when valid.
pub fn validate_spec(sv: &SkyVault) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_name(sv, &mut errors);
    check_schedules(sv, &mut errors);
    check_wal(sv, &mut errors);
    check_memory(sv, &mut errors);
    check_pod(sv, &mut errors);
    errors
}

/// The errors as one InvalidSpec problem.
pub fn spec_problem(errors: &[FieldError]) -> Option<Problem> {
    if errors.is_empty() {
        return None;
    }
    let message = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    Some(Problem {
        reason: reason::INVALID_SPEC,
        message,
    })
}

fn check_name(sv: &SkyVault, errors: &mut Vec<FieldError>) {
    let name = sv.metadata.name.as_deref().unwrap_or("");
    let dns1035 = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if name.len() > MAX_NAME_LEN || !dns1035 {
        errors.push(FieldError::new(
            "metadata.name",
            format!("must be a DNS-1035 label of at most {MAX_NAME_LEN} characters"),
        ));
    }
}

fn check_schedules(sv: &SkyVault, errors: &mut Vec<FieldError>) {
    for (kind, field) in [
        (JobKind::Compact, "spec.compaction.schedule"),
        (JobKind::Purge, "spec.purge.schedule"),
    ] {
        if let Err(e) = Schedule::parse(kind.schedule(sv)) {
            errors.push(FieldError::new(field, e.reason));
        }
    }
}

/// The batcher refuses to start otherwise (`--wal-stop-bytes` must be 0 or exceed
/// `--wal-flush-bytes`): every batcher Pod would crash-loop.
fn check_wal(sv: &SkyVault, errors: &mut Vec<FieldError>) {
    let b = &sv.spec.batcher;
    if b.wal_stop_bytes != 0 && b.wal_stop_bytes <= b.wal_flush_bytes {
        errors.push(FieldError::new(
            "spec.batcher.walStopBytes",
            format!(
                "must be 0 or more than spec.batcher.walFlushBytes ({})",
                b.wal_flush_bytes
            ),
        ));
    }
}

fn check_memory(sv: &SkyVault, errors: &mut Vec<FieldError>) {
    let spec = &sv.spec;
    let roles = [
        (
            "spec.index.resources.limits.memory",
            &spec.index.resources,
            spec.index.cache_capacity_bytes,
        ),
        (
            "spec.cache.resources.limits.memory",
            &spec.cache.resources,
            spec.cache.cache_capacity_bytes,
        ),
    ];
    for (field, resources, capacity) in roles {
        let limit = resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"));
        let Some(limit) = limit else { continue };
        match parse_bytes(&limit.0) {
            Some(bytes) if bytes > i128::from(capacity) => {}
            Some(_) => errors.push(FieldError::new(
                field,
                format!("must be larger than the cache capacity ({capacity} bytes)"),
            )),
            None => errors.push(FieldError::new(
                field,
                format!("{:?} is not a quantity", limit.0),
            )),
        }
    }
}

fn check_pod(sv: &SkyVault, errors: &mut Vec<FieldError>) {
    let pod = &sv.spec.pod;
    for key in [
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        "app.kubernetes.io/managed-by",
    ] {
        if pod.labels.contains_key(key) {
            errors.push(FieldError::new(
                "spec.pod.labels",
                format!("{key} is reserved for the operator"),
            ));
        }
    }
    if let Some(sc) = &pod.security_context
        && (sc.run_as_non_root == Some(false) || sc.run_as_user == Some(0))
    {
        errors.push(FieldError::new(
            "spec.pod.securityContext",
            "must not run as root",
        ));
    }
}

/// Bytes of a Kubernetes quantity such as `512Mi`, `1G`, `1e9` or `1500m` (rounded down).
pub fn parse_bytes(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 = digits.parse().ok()?;
    let scale = 10i128.checked_pow(u32::try_from(frac_part.len()).ok()?)?;
    let (mul, div): (i128, i128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        s if s.starts_with(['e', 'E']) => (10i128.checked_pow(s[1..].parse().ok()?)?, 1),
        _ => return None,
    };
    Some(mantissa.checked_mul(mul)? / scale / div)
}

/// The Secrets a SkyVault refers to: (field, Secret name, keys it must hold).
pub fn secret_refs(sv: &SkyVault) -> Vec<(&'static str, String, Vec<String>)> {
    let db = &sv.spec.database.url_secret;
    let mut refs = vec![(
        "spec.database.urlSecret",
        db.name.clone(),
        vec![db.key.clone()],
    )];
    if let Some(c) = &sv.spec.object_store.credentials_secret {
        refs.push((
            "spec.objectStore.credentialsSecret",
            c.name.clone(),
            vec![c.access_key_id_key.clone(), c.secret_access_key_key.clone()],
        ));
    }
    refs
}

/// The field naming the TLS Secret in [`reloaded_secret_refs`].
pub const TLS_SECRET_FIELD: &str = "spec.tls.secretName";

/// Secrets the pods read as files and reload themselves (TLS pair, tokens): checked to
/// exist with their keys like [`secret_refs`], but kept out of the digest, so a renewed
/// certificate or a rotated token does not roll the pods (docs/security.md).
pub fn reloaded_secret_refs(sv: &SkyVault) -> Vec<(&'static str, String, Vec<String>)> {
    let mut refs = Vec::new();
    if let Some(secret) = crate::security::tls_secret_name(sv) {
        let keys = ["tls.crt", "tls.key", "ca.crt"].map(String::from).to_vec();
        refs.push((TLS_SECRET_FIELD, secret, keys));
    }
    if let Some(auth) = &sv.spec.auth {
        let keys = vec![auth.tokens_key.clone()];
        refs.push((
            "spec.auth.tokensSecretName",
            auth.tokens_secret_name.clone(),
            keys,
        ));
    }
    refs
}

/// SHA-256 over the values of the referenced Secret keys (in `secret_refs` order), for the
/// Pods' checksum; never the values themselves. `secrets[i]` is the Secret of `refs[i]`.
pub fn secrets_digest(refs: &[(&'static str, String, Vec<String>)], secrets: &[&Secret]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for ((_, name, keys), secret) in refs.iter().zip(secrets) {
        for key in keys {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(key.as_bytes());
            hasher.update([0]);
            let value: &[u8] = secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.as_slice())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|v| v.as_bytes())
                })
                .unwrap_or_default();
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value);
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a fetched Secret (None = not found) holds the keys a field needs.
pub fn check_secret(
    field: &str,
    name: &str,
    keys: &[String],
    secret: Option<&Secret>,
) -> Result<(), Problem> {
    let Some(secret) = secret else {
        return Err(Problem {
            reason: reason::SECRET_NOT_FOUND,
            message: format!("{field}: Secret {name:?} not found"),
        });
    };
    let has = |k: &String| {
        secret.data.as_ref().is_some_and(|d| d.contains_key(k))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(k))
    };
    let missing: Vec<&String> = keys.iter().filter(|k| !has(k)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Problem {
        reason: reason::SECRET_NOT_FOUND,
        message: format!("{field}: Secret {name:?} has no key {:?}", missing[0]),
    })
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
