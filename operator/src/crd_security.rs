//! The security parts of a `SkyVault` spec: TLS, client tokens and the
//! NetworkPolicies the operator writes (docs/security.md).

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// TLS on every role's gRPC listener and between roles.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A Secret in cert-manager's layout (`tls.crt`, `tls.key`, `ca.crt`): the
    /// certificate every role serves and presents to the others. Its names must
    /// cover the Services and the cache pods (`*.NAME-cache-headless.NAMESPACE.svc`),
    /// its usages both server and client auth. Renewals are picked up without a
    /// restart. Unset: the operator issues it into `NAME-tls` from its own CA in
    /// `NAME-tls-ca` and renews it 30 days before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// Also require client certificates signed by `ca.crt` from every client of
    /// the batcher and the index (mTLS). The cache always requires them: only
    /// the roles call it.
    #[serde(default)]
    pub require_client_certificates: bool,
}

/// Client tokens for the batcher and the index.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret holding the tokens file: one `read TOKEN` or `write TOKEN` per
    /// line. Re-read by the pods when it changes.
    #[schemars(length(min = 1, max = 253))]
    pub tokens_secret_name: String,
    /// Key of the tokens file in the Secret.
    #[serde(default = "default_tokens_key")]
    #[schemars(length(min = 1, max = 253))]
    pub tokens_key: String,
}

fn default_tokens_key() -> String {
    "tokens".into()
}

/// NetworkPolicies for the SkyVault's pods (enforced only by a CNI that
/// implements them).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Write the policies (default). `false` removes them.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may call the batcher and the index over gRPC. Empty: any pod and
    /// any address (the caches stay reachable from the indexes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<NetworkPolicyPeer>,
    /// Where the pods may connect besides DNS and each other: the metadata
    /// database and the object store. Empty: anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec {
            enabled: true,
            clients: Vec::new(),
            egress: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}
