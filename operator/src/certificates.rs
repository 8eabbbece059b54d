//! Certificates the operator issues when `spec.tls` names no Secret: a CA per SkyVault
//! (Secret `NAME-tls-ca`, never mounted into a pod) and one certificate for every role,
//! signed by it (Secret `NAME-tls`, cert-manager's layout: `tls.crt`, `tls.key`,
//! `ca.crt`), re-issued well before it expires. The pods reload the renewed files
//! without a restart (`dataplane/src/tls.rs`). Pure: the controller reads and writes
//! the Secrets (docs/security.md, decision 0007).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::crd::SkyVault;
use crate::naming::{self, Role};

/// The CA signs certificates for ten years; replacing it is a manual step (docs/security.md).
pub const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(10 * 365 * 24);
/// Each role certificate is good for 90 days…
pub const CERT_VALIDITY: SignedDuration = SignedDuration::from_hours(90 * 24);
/// …and replaced once less than 30 days are left, so a renewal has weeks to reach
/// every pod (kubelet refreshes Secret volumes within about a minute).
pub const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);

/// Keys of both Secrets: `kubernetes.io/tls`'s two, plus the CA certificate in
/// `NAME-tls`. The CA Secret uses the same layout, so a cert-manager CA Issuer can point
/// at it to sign client certificates.
const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";
const CA_CERT_KEY: &str = "ca.crt";

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("Secret {secret}: {problem} (delete the Secret to have a new CA issued)")]
    BadCa { secret: String, problem: String },
}

/// The Secret holding the operator's CA for `sv`.
pub fn ca_secret_name(sv: &SkyVault) -> String {
    format!("{}-tls-ca", sv.name_any())
}

/// The Secret holding the certificate every role serves, when the operator issues it.
pub fn generated_secret_name(sv: &SkyVault) -> String {
    format!("{}-tls", sv.name_any())
}

/// The names a role certificate must hold: each role's Service and headless Service
/// (short and fully qualified) and every Pod behind the headless Services, which is
/// how the index dials its caches.
pub fn dns_names(sv: &SkyVault) -> Vec<String> {
    let ns = sv.namespace().unwrap_or_else(|| "default".into());
    let mut names = Vec::new();
    for role in Role::ALL {
        for service in [naming::role_name(sv, role), naming::headless_name(sv, role)] {
            names.push(service.clone());
            names.push(format!("{service}.{ns}"));
            for domain in ["svc", "svc.cluster.local"] {
                names.push(format!("{service}.{ns}.{domain}"));
            }
        }
        for domain in ["svc", "svc.cluster.local"] {
            let headless = naming::headless_name(sv, role);
            names.push(format!("*.{headless}.{ns}.{domain}"));
        }
    }
    names
}

/// A CA certificate and its key, as PEM.
#[derive(Clone, Debug, PartialEq)]
pub struct CaPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A new CA for `sv`, valid from `now` for [`CA_VALIDITY`].
pub fn new_ca(sv: &SkyVault, now: Timestamp) -> Result<CaPair, CertError> {
    let ns = sv.namespace().unwrap_or_default();
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let cn = format!("SkyVault {}/{} CA", ns, sv.name_any());
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, now, CA_VALIDITY);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(CaPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A role certificate for `names`, signed by `ca`, valid from `now` for
/// [`CERT_VALIDITY`]: server and client authentication (the index presents it to the
/// caches). Returns (certificate, key) as PEM.
pub fn issue(ca: &CaPair, names: &[String], now: Timestamp) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let cn = names.first().cloned().unwrap_or_default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, CERT_VALIDITY);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Backdated by five minutes: a node whose clock is slightly behind accepts it at once.
fn set_validity(params: &mut CertificateParams, now: Timestamp, validity: SignedDuration) {
    let at = |t: Timestamp| {
        time::OffsetDateTime::from_unix_timestamp(t.as_second())
            .expect("a jiff timestamp is within time's range")
    };
    params.not_before = at(now - SignedDuration::from_mins(5));
    params.not_after = at(now + validity);
}

/// What the role certificate in `NAME-tls` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertState {
    /// Valid, from the current CA, with every name: nothing to do.
    Current {
        not_after: Timestamp,
    },
    Missing,
    /// Fewer than [`RENEW_BEFORE`] left (or already expired).
    Expiring {
        not_after: Timestamp,
    },
    /// Signed by another CA than the one in `NAME-tls-ca` (the CA was replaced).
    OtherCa,
    /// Lacks a name it must hold (e.g. written by an older operator).
    NamesChanged,
    /// Not a certificate and key this operator can read.
    Unreadable(String),
}

impl CertState {
    pub fn needs_issue(&self) -> bool {
        !matches!(self, CertState::Current { .. })
    }

    /// Why a new certificate is issued, for the Event.
    pub fn reason(&self) -> String {
        match self {
            CertState::Current { .. } => "current".into(),
            CertState::Missing => "none issued yet".into(),
            CertState::Expiring { not_after } => format!("it expires at {not_after}"),
            CertState::OtherCa => "it was signed by a previous CA".into(),
            CertState::NamesChanged => "it lacks names the SkyVault's Services need".into(),
            CertState::Unreadable(why) => format!("the Secret's certificate is unusable: {why}"),
        }
    }
}

/// Judges the role certificate Secret `secret` against the CA `ca` at `now`.
pub fn cert_state(
    secret: Option<&Secret>,
    ca: &CaPair,
    names: &[String],
    now: Timestamp,
) -> CertState {
    let Some(secret) = secret else {
        return CertState::Missing;
    };
    let value = |key: &str| secret_value(secret, key);
    let (Some(cert), Some(key), Some(ca_cert)) =
        (value(CERT_KEY), value(KEY_KEY), value(CA_CERT_KEY))
    else {
        return CertState::Unreadable("a key of tls.crt, tls.key, ca.crt is missing".into());
    };
    if ca_cert != ca.cert_pem {
        return CertState::OtherCa;
    }
    if let Err(e) = KeyPair::from_pem(&key) {
        return CertState::Unreadable(format!("tls.key: {e}"));
    }
    let (not_after, held) = match read_cert(&cert) {
        Ok(read) => read,
        Err(e) => return CertState::Unreadable(format!("tls.crt: {e}")),
    };
    if names.iter().any(|n| !held.contains(n)) {
        return CertState::NamesChanged;
    }
    if not_after - RENEW_BEFORE <= now {
        return CertState::Expiring { not_after };
    }
    CertState::Current { not_after }
}

/// The expiry and DNS names of a PEM certificate.
fn read_cert(pem: &str) -> Result<(Timestamp, Vec<String>), String> {
    use x509_parser::extensions::GeneralName;
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let not_after =
        Timestamp::from_second(cert.validity().not_after.timestamp()).map_err(|e| e.to_string())?;
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok((not_after, names))
}

/// The CA stored in `secret` (`NAME-tls-ca`), checked to be usable.
pub fn ca_from_secret(secret: &Secret) -> Result<CaPair, CertError> {
    let bad = |problem: String| CertError::BadCa {
        secret: secret.name_any(),
        problem,
    };
    let (Some(cert_pem), Some(key_pem)) = (
        secret_value(secret, CERT_KEY),
        secret_value(secret, KEY_KEY),
    ) else {
        return Err(bad("no tls.crt or tls.key".into()));
    };
    let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("tls.key: {e}")))?;
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| bad(format!("tls.crt: {e}")))?;
    Ok(CaPair { cert_pem, key_pem })
}

/// The `NAME-tls-ca` Secret holding `ca`, owned by the SkyVault.
pub fn ca_secret(sv: &SkyVault, ca: &CaPair) -> Secret {
    secret(
        sv,
        ca_secret_name(sv),
        "tls-ca",
        "kubernetes.io/tls",
        [
            (CERT_KEY, ca.cert_pem.as_str()),
            (KEY_KEY, ca.key_pem.as_str()),
        ],
    )
}

/// The `NAME-tls` Secret: the role certificate, its key and the CA certificate.
pub fn cert_secret(sv: &SkyVault, ca: &CaPair, cert_pem: &str, key_pem: &str) -> Secret {
    secret(
        sv,
        generated_secret_name(sv),
        "tls",
        "kubernetes.io/tls",
        [
            (CERT_KEY, cert_pem),
            (KEY_KEY, key_pem),
            (CA_CERT_KEY, ca.cert_pem.as_str()),
        ],
    )
}

fn secret<const N: usize>(
    sv: &SkyVault,
    name: String,
    component: &str,
    type_: &str,
    values: [(&str, &str); N],
) -> Secret {
    let data = values
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect::<BTreeMap<_, _>>();
    Secret {
        metadata: naming::child_meta(sv, name, component),
        data: Some(data),
        type_: Some(type_.into()),
        ..Secret::default()
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

#[cfg(test)]
#[path = "certificates_tests.rs"]
mod tests;
