use super::*;
use crate::testutil::sample;
use std::sync::Arc;
use tokio_rustls::rustls::{
    self, RootCertStore,
    client::WebPkiServerVerifier,
    client::danger::ServerCertVerifier,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

fn now() -> Timestamp {
    "2026-11-30T12:00:00Z".parse().unwrap()
}

fn issued() -> (CaPair, Secret) {
    let sv = sample();
    let ca = new_ca(&sv, now()).unwrap();
    let (cert, key) = issue(&ca, &dns_names(&sv), now()).unwrap();
    (ca.clone(), cert_secret(&sv, &ca, &cert, &key))
}

/// rustls' own verification of `secret`'s certificate for `name` against `ca`, at `at`.
fn verify(ca: &CaPair, secret: &Secret, name: &str, at: Timestamp) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let pem = secret_value(secret, "tls.crt").unwrap();
    let cert = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.as_second() as u64));
    verifier
        .verify_server_cert(&cert, &[], &name, &[], at)
        .map(|_| ())
}

#[test]
fn the_certificate_verifies_for_every_name_a_client_or_role_dials() {
    let (ca, secret) = issued();
    for name in [
        "vault-batcher.prod.svc",
        "vault-index.prod.svc",
        "vault-index.prod.svc.cluster.local",
        "vault-index",
        "vault-cache-2.vault-cache-headless.prod.svc",
        "vault-index-0.vault-index-headless.prod.svc.cluster.local",
    ] {
        verify(&ca, &secret, name, now()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let other = verify(&ca, &secret, "vault-index.other.svc", now());
    assert!(other.is_err(), "a name of another namespace verified");
    let later = now() + CERT_VALIDITY + SignedDuration::from_hours(1);
    assert!(verify(&ca, &secret, "vault-index.prod.svc", later).is_err());
}

#[test]
fn a_fresh_certificate_is_current_until_thirty_days_before_it_expires() {
    let sv = sample();
    let (ca, secret) = issued();
    let names = dns_names(&sv);
    let state = cert_state(Some(&secret), &ca, &names, now());
    assert!(matches!(state, CertState::Current { .. }), "{state:?}");
    let before_window = now() + CERT_VALIDITY - RENEW_BEFORE - SignedDuration::from_hours(1);
    assert!(!cert_state(Some(&secret), &ca, &names, before_window).needs_issue());
    let in_window = now() + CERT_VALIDITY - RENEW_BEFORE + SignedDuration::from_hours(1);
    let state = cert_state(Some(&secret), &ca, &names, in_window);
    assert!(matches!(state, CertState::Expiring { .. }), "{state:?}");
    assert!(state.reason().contains("expires"), "{}", state.reason());
}

#[test]
fn another_ca_missing_names_or_a_damaged_secret_get_a_new_certificate() {
    let sv = sample();
    let (ca, secret) = issued();
    let names = dns_names(&sv);
    assert_eq!(cert_state(None, &ca, &names, now()), CertState::Missing);

    let new_ca = new_ca(&sv, now()).unwrap();
    assert_eq!(
        cert_state(Some(&secret), &new_ca, &names, now()),
        CertState::OtherCa
    );

    let (few, key) = issue(&ca, &names[..2], now()).unwrap();
    let partial = cert_secret(&sv, &ca, &few, &key);
    assert_eq!(
        cert_state(Some(&partial), &ca, &names, now()),
        CertState::NamesChanged
    );

    let garbage = cert_secret(&sv, &ca, "junk", &key);
    let state = cert_state(Some(&garbage), &ca, &names, now());
    assert!(
        matches!(&state, CertState::Unreadable(why) if why.contains("tls.crt")),
        "{state:?}"
    );
    let mut no_key = secret.clone();
    no_key.data.as_mut().unwrap().remove("tls.key");
    assert!(matches!(
        cert_state(Some(&no_key), &ca, &names, now()),
        CertState::Unreadable(_)
    ));
}

#[test]
fn the_ca_round_trips_through_its_secret_and_a_damaged_one_is_named() {
    let sv = sample();
    let ca = new_ca(&sv, now()).unwrap();
    let secret = ca_secret(&sv, &ca);
    assert_eq!(secret.metadata.name.as_deref(), Some("vault-tls-ca"));
    assert_eq!(ca_from_secret(&secret).unwrap(), ca);
    // cert-manager's CA Issuer layout, to sign client certificates from it.
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["tls.crt", "tls.key"]);
    // A certificate issued from the stored CA verifies against it.
    let (cert, key) = issue(&ca_from_secret(&secret).unwrap(), &dns_names(&sv), now()).unwrap();
    let leaf = cert_secret(&sv, &ca, &cert, &key);
    verify(&ca, &leaf, "vault-index.prod.svc", now()).unwrap();
    assert_eq!(leaf.type_.as_deref(), Some("kubernetes.io/tls"));

    let mut damaged = secret.clone();
    damaged.data.as_mut().unwrap().remove("tls.key");
    let err = ca_from_secret(&damaged).unwrap_err().to_string();
    assert!(
        err.contains("vault-tls-ca") && err.contains("delete the Secret"),
        "{err}"
    );
}
