//! What TLS and tokens add to a role's pods (files from Secrets + the env
//! that points the binary at them), and the operator-generated internal
//! token. Pure builders; the controller only creates the token Secret.
//! See docs/security.md.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    EnvVar, KeyToPath, PodTemplateSpec, Secret, SecretVolumeSource, Volume, VolumeMount,
};
use kube::ResourceExt;
use std::collections::BTreeMap;

use crate::crd::SkyVault;
use crate::naming::{self, Role};
use crate::pod::env_var;

pub const TLS_DIR: &str = "/etc/skyvault/tls";
pub const AUTH_DIR: &str = "/etc/skyvault/auth";
pub const INTERNAL_DIR: &str = "/etc/skyvault/internal";
/// Key of the token in the internal-token Secret.
pub const INTERNAL_TOKEN_KEY: &str = "token";

/// The Secret holding the roles' own token (index → cache).
/// The Secret the roles' certificate comes from: the user's, or the one the operator
/// issues (`certificates`); `None` without `spec.tls`.
pub fn tls_secret_name(sv: &SkyVault) -> Option<String> {
    let tls = sv.spec.tls.as_ref()?;
    Some(match &tls.secret_name {
        Some(name) => name.clone(),
        None => crate::certificates::generated_secret_name(sv),
    })
}

pub fn internal_token_secret_name(sv: &SkyVault) -> String {
    format!("{}-internal-token", sv.name_any())
}

/// Files of one Secret mounted into a role, and the env naming them.
struct SecretFiles {
    volume: Volume,
    mount: VolumeMount,
    env: Vec<EnvVar>,
}

/// `template` with the role's TLS pair, tokens file and internal token mounted.
pub fn secured(sv: &SkyVault, role: Role, mut template: PodTemplateSpec) -> PodTemplateSpec {
    let spec = template.spec.as_mut().expect("pod templates have a spec");
    for files in secret_files(sv, role) {
        spec.volumes.get_or_insert_default().push(files.volume);
        let container = &mut spec.containers[0];
        container
            .volume_mounts
            .get_or_insert_default()
            .push(files.mount);
        container.env.get_or_insert_default().extend(files.env);
    }
    template
}

fn secret_files(sv: &SkyVault, role: Role) -> Vec<SecretFiles> {
    let mut out = Vec::new();
    if let Some(tls) = &sv.spec.tls {
        let mut env = vec![
            env_var("SKYVAULT_TLS_CERT_FILE", format!("{TLS_DIR}/tls.crt")),
            env_var("SKYVAULT_TLS_KEY_FILE", format!("{TLS_DIR}/tls.key")),
            env_var("SKYVAULT_TLS_CA_FILE", format!("{TLS_DIR}/ca.crt")),
        ];
        // Only the roles call the cache, and they present the SkyVault's certificate.
        if role == Role::Cache || tls.require_client_certificates {
            env.push(env_var(
                "SKYVAULT_TLS_CLIENT_CA_FILE",
                format!("{TLS_DIR}/ca.crt"),
            ));
        }
        let keys = ["tls.crt", "tls.key", "ca.crt"].map(|k| (k, k));
        let secret = tls_secret_name(sv).expect("spec.tls is set");
        out.push(files("tls", &secret, TLS_DIR, &keys, env));
    }
    if let (Some(auth), true) = (&sv.spec.auth, role.has_client_service()) {
        let env = vec![env_var(
            "SKYVAULT_AUTH_TOKENS_FILE",
            format!("{AUTH_DIR}/tokens"),
        )];
        let keys = [(auth.tokens_key.as_str(), "tokens")];
        out.push(files(
            "auth",
            &auth.tokens_secret_name,
            AUTH_DIR,
            &keys,
            env,
        ));
    }
    if matches!(role, Role::Index | Role::Cache) {
        let env = vec![env_var(
            "SKYVAULT_INTERNAL_TOKEN_FILE",
            format!("{INTERNAL_DIR}/token"),
        )];
        let keys = [(INTERNAL_TOKEN_KEY, "token")];
        let secret = internal_token_secret_name(sv);
        out.push(files("internal-token", &secret, INTERNAL_DIR, &keys, env));
    }
    out
}

/// A read-only volume of `secret`'s `keys` (key → file name) at `dir`. Mounted
/// as a directory, not with subPath: kubelet then updates the files in place
/// when the Secret changes, and the binary reloads them.
fn files(
    name: &str,
    secret: &str,
    dir: &str,
    keys: &[(&str, &str)],
    env: Vec<EnvVar>,
) -> SecretFiles {
    let items = keys
        .iter()
        .map(|(key, path)| KeyToPath {
            key: key.to_string(),
            path: path.to_string(),
            ..KeyToPath::default()
        })
        .collect();
    SecretFiles {
        volume: Volume {
            name: name.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.into()),
                items: Some(items),
                // Group-readable for the pod's fsGroup; nobody else.
                default_mode: Some(0o440),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        mount: VolumeMount {
            name: name.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        env,
    }
}

/// The internal-token Secret, owned by the SkyVault (deleted with it).
pub fn internal_token_secret(sv: &SkyVault, token: &str) -> Secret {
    Secret {
        metadata: naming::child_meta(sv, internal_token_secret_name(sv), "internal-token"),
        data: Some(BTreeMap::from([(
            INTERNAL_TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// 32 random bytes as hex, from the kernel's CSPRNG.
pub fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AuthSpec, TlsSpec};
    use crate::testutil::sample;

    fn env_of(sv: &SkyVault, role: Role) -> BTreeMap<String, String> {
        secret_files(sv, role)
            .into_iter()
            .flat_map(|f| f.env)
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect()
    }

    fn secured_sample() -> SkyVault {
        let mut sv = sample();
        sv.spec.tls = Some(TlsSpec {
            secret_name: Some("sv-tls".into()),
            require_client_certificates: false,
        });
        sv.spec.auth = Some(AuthSpec {
            tokens_secret_name: "sv-tokens".into(),
            tokens_key: "tokens".into(),
        });
        sv
    }

    #[test]
    fn each_role_gets_only_the_credentials_it_uses() {
        let sv = secured_sample();
        let batcher = env_of(&sv, Role::Batcher);
        assert!(batcher.contains_key("SKYVAULT_TLS_CERT_FILE"));
        assert!(batcher.contains_key("SKYVAULT_AUTH_TOKENS_FILE"));
        assert!(
            !batcher.contains_key("SKYVAULT_INTERNAL_TOKEN_FILE"),
            "never calls the cache"
        );
        assert!(
            !batcher.contains_key("SKYVAULT_TLS_CLIENT_CA_FILE"),
            "mTLS not asked for"
        );
        let index = env_of(&sv, Role::Index);
        assert!(index.contains_key("SKYVAULT_AUTH_TOKENS_FILE"));
        assert!(
            index.contains_key("SKYVAULT_INTERNAL_TOKEN_FILE"),
            "calls the caches"
        );
        let cache = env_of(&sv, Role::Cache);
        assert!(
            !cache.contains_key("SKYVAULT_AUTH_TOKENS_FILE"),
            "users never call it"
        );
        assert_eq!(
            cache["SKYVAULT_TLS_CLIENT_CA_FILE"],
            "/etc/skyvault/tls/ca.crt"
        );
        assert!(cache.contains_key("SKYVAULT_INTERNAL_TOKEN_FILE"));
    }

    #[test]
    fn without_tls_or_auth_only_the_internal_token_is_mounted() {
        let sv = sample();
        assert!(env_of(&sv, Role::Batcher).is_empty());
        let index = env_of(&sv, Role::Index);
        assert_eq!(
            index.keys().collect::<Vec<_>>(),
            ["SKYVAULT_INTERNAL_TOKEN_FILE"]
        );
    }

    #[test]
    fn probes_use_https_when_the_listeners_serve_tls() {
        let schemes = |sv: &SkyVault| {
            let sts = crate::statefulset::stateful_set(sv, Role::Index, "x");
            let container = sts.spec.template.spec.unwrap().containers[0].clone();
            [
                container.startup_probe,
                container.liveness_probe,
                container.readiness_probe,
            ]
            .map(|p| p.unwrap().http_get.unwrap().scheme.unwrap())
        };
        assert_eq!(schemes(&sample()), ["HTTP"; 3]);
        assert_eq!(schemes(&secured_sample()), ["HTTPS"; 3]);
    }

    #[test]
    fn required_client_certificates_reach_batcher_and_index() {
        let mut sv = secured_sample();
        sv.spec.tls.as_mut().unwrap().require_client_certificates = true;
        for role in Role::ALL {
            assert!(
                env_of(&sv, role).contains_key("SKYVAULT_TLS_CLIENT_CA_FILE"),
                "{role:?}"
            );
        }
    }

    #[test]
    fn secrets_are_mounted_read_only_as_directories_so_renewals_reach_the_pod() {
        let sv = secured_sample();
        let template = crate::statefulset::stateful_set(&sv, Role::Index, "c")
            .spec
            .template;
        let spec = template.spec.unwrap();
        let mounts = spec.containers[0].volume_mounts.clone().unwrap();
        for dir in [TLS_DIR, AUTH_DIR, INTERNAL_DIR] {
            let m = mounts.iter().find(|m| m.mount_path == dir).expect(dir);
            assert_eq!(m.read_only, Some(true));
            assert!(m.sub_path.is_none(), "subPath mounts never update");
        }
        let volumes = spec.volumes.unwrap();
        let tls = volumes.iter().find(|v| v.name == "tls").unwrap();
        assert_eq!(
            tls.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("sv-tls")
        );
    }

    #[test]
    fn the_internal_token_is_random_and_owned_by_the_skyvault() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        let secret = internal_token_secret(&sample(), &a);
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("vault-internal-token")
        );
        assert!(secret.metadata.owner_references.is_some());
    }
}
