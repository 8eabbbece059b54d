//! The controller's edge for certificates the operator issues (`spec.tls` without a
//! `secretName`): reads and writes `NAME-tls-ca` and `NAME-tls`; every decision is in
//! [`crate::certificates`].

use super::*;
use crate::certificates::{self, CaPair};
use kube::api::PostParams;

/// Makes sure the CA and a current role certificate exist (issuing or renewing it), when
/// the operator issues them. A Secret of those names that this SkyVault does not own, or a
/// damaged CA, is a problem for the user: nothing is overwritten.
pub(super) async fn ensure_certificates(
    sv: &SkyVault,
    ctx: &Context,
    ns: &str,
    now: Timestamp,
) -> Result<Result<(), Problem>> {
    let Some(tls) = &sv.spec.tls else {
        return Ok(Ok(()));
    };
    if tls.secret_name.is_some() {
        return Ok(Ok(()));
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let ca = match ensure_ca(sv, ctx, &api, now).await? {
        Ok(ca) => ca,
        Err(problem) => return Ok(Err(problem)),
    };
    let name = certificates::generated_secret_name(sv);
    let current = api.get_opt(&name).await?;
    if let Some(problem) = current.as_ref().and_then(|s| not_ours(sv, s)) {
        return Ok(Err(problem));
    }
    let names = certificates::dns_names(sv);
    let state = certificates::cert_state(current.as_ref(), &ca, &names, now);
    if !state.needs_issue() {
        return Ok(Ok(()));
    }
    let (cert, key) = certificates::issue(&ca, &names, now).map_err(cert_error)?;
    let mut secret = certificates::cert_secret(sv, &ca, &cert, &key);
    match current {
        None => {
            api.create(&PostParams::default(), &secret).await?;
        }
        Some(old) => {
            // Replaced only if nobody changed it since it was read; a Secret's type is
            // immutable, so it keeps the one it has.
            secret.metadata.resource_version = old.metadata.resource_version;
            secret.type_ = old.type_;
            api.replace(&name, &PostParams::default(), &secret).await?;
        }
    }
    let note = format!(
        "issued the certificate in Secret {name}: {}",
        state.reason()
    );
    info!(skyvault = %sv.name_any(), "{note}");
    publish(
        ctx,
        sv,
        EventType::Normal,
        "CertificateIssued",
        "IssueCertificate",
        note,
    )
    .await;
    Ok(Ok(()))
}

/// The SkyVault's CA from `NAME-tls-ca`, created on first use.
async fn ensure_ca(
    sv: &SkyVault,
    ctx: &Context,
    api: &Api<Secret>,
    now: Timestamp,
) -> Result<Result<CaPair, Problem>> {
    if let Some(secret) = api.get_opt(&certificates::ca_secret_name(sv)).await? {
        if let Some(problem) = not_ours(sv, &secret) {
            return Ok(Err(problem));
        }
        return Ok(certificates::ca_from_secret(&secret).map_err(|e| Problem {
            reason: reason::CERTIFICATE_FAILED,
            message: e.to_string(),
        }));
    }
    let ca = certificates::new_ca(sv, now).map_err(cert_error)?;
    // A concurrent create (another reconcile) fails with a conflict and is retried.
    api.create(&PostParams::default(), &certificates::ca_secret(sv, &ca))
        .await?;
    let note = format!(
        "created the certificate authority in Secret {}",
        certificates::ca_secret_name(sv)
    );
    publish(
        ctx,
        sv,
        EventType::Normal,
        "CertificateAuthorityCreated",
        "IssueCertificate",
        note,
    )
    .await;
    Ok(Ok(ca))
}

/// A Secret of an operator-issued name that belongs to someone else.
fn not_ours(sv: &SkyVault, secret: &Secret) -> Option<Problem> {
    (!children::owned_by(secret, sv)).then(|| Problem {
        reason: reason::CERTIFICATE_FAILED,
        message: format!(
            "spec.tls: Secret {:?} exists and is not this SkyVault's; name it in \
             spec.tls.secretName to use it, or delete it to have the operator issue one",
            secret.name_any()
        ),
    })
}

fn cert_error(e: certificates::CertError) -> Error {
    Error::Certificate(e.to_string())
}
