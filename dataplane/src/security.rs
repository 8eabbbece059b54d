//! A listener's security settings (TLS and who may call it), assembled once
//! from the flags every gRPC-serving command shares. See docs/security.md.

use crate::auth::{AuthArgs, Policy};
use crate::tls::TlsArgs;
use std::sync::Arc;

/// Security flags shared by batcher, index, cache and standalone.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SecurityArgs {
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// What a role's listeners apply: TLS on both (`server::serve_grpc`,
/// `server::serve_http`), credentials on gRPC calls.
#[derive(Clone, Default)]
pub struct ListenerSecurity {
    /// `None`: plaintext.
    pub tls: Option<crate::tls::ServerConfigs>,
    pub policy: Arc<Policy>,
}

impl ListenerSecurity {
    /// The HTTP listener's TLS configuration (`None`: plaintext).
    pub fn http_tls(&self) -> Option<Arc<tokio_rustls::rustls::ServerConfig>> {
        self.tls.as_ref().map(|tls| tls.http.clone())
    }
}

impl SecurityArgs {
    /// Reads every file now, so a wrong path or a bad certificate stops the
    /// process at start with a message naming it.
    pub fn listeners(&self) -> anyhow::Result<ListenerSecurity> {
        let security = ListenerSecurity {
            tls: self.tls.server_configs()?,
            policy: Arc::new(Policy::from_args(&self.auth)?),
        };
        if security.tls.is_none() {
            tracing::warn!("gRPC and HTTP listeners are plaintext (no --tls-cert-file)");
        }
        if security.policy.is_open() {
            tracing::warn!(
                "gRPC calls are not authenticated (no --auth-tokens-file / --internal-token-file)"
            );
        }
        Ok(security)
    }
}

/// How a process calls gRPC servers: over TLS (`tls`) and with a bearer
/// token (`token`), each when configured.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    pub token: Option<crate::auth::BearerToken>,
}

impl ClientSecurity {
    /// A channel that connects on first use (and reconnects by itself). Build
    /// `endpoint` from `http://HOST:PORT`: with TLS the handshake is ours
    /// (`tls::connector`), checking the certificate against HOST.
    pub fn connect_lazy(&self, endpoint: tonic::transport::Endpoint) -> tonic::transport::Channel {
        crate::tls::lazy_channel(endpoint, self.tls.as_ref(), None)
    }

    /// Adds the token to every call.
    pub fn credentials(&self) -> Credentials {
        Credentials(self.token.clone())
    }
}

/// A tonic interceptor adding `authorization: Bearer TOKEN` when there is a token.
#[derive(Clone, Default)]
pub struct Credentials(Option<crate::auth::BearerToken>);

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.header());
        }
        Ok(request)
    }
}

impl SecurityArgs {
    /// How a role calls its peers (the index its caches): over TLS when it
    /// serves TLS itself, presenting its own certificate and the internal token.
    pub fn peer_client(&self) -> anyhow::Result<ClientSecurity> {
        let tls = match self.tls.tls_cert_file {
            Some(_) => Some(self.tls.client_config()?),
            None => None,
        };
        let token = match &self.auth.internal_token_file {
            Some(path) => Some(crate::auth::BearerToken::from_file(path)?),
            None => None,
        };
        Ok(ClientSecurity { tls, token })
    }
}
