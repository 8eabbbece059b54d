//! Who may call what: bearer tokens checked on every gRPC request (a tower
//! layer in front of every service; see docs/security.md).
//!
//! - `batcher.v1` needs a `write` token, `index.v1` a `read` (or `write`)
//!   token: with `--auth-tokens-file`, a request without a token fails
//!   UNAUTHENTICATED and one whose token lacks the access PERMISSION_DENIED.
//! - `cache.v1` is internal: with `--internal-token-file`, only a request
//!   carrying that token (which the operator generates and mounts into the
//!   roles only) is served. User tokens never open it.
//! - Health and reflection stay open: probes have no credentials.
//!
//! Both files are re-read when they change (at most once a second), so a
//! rotated Secret takes effect without a restart.

use crate::reload::{Build, Reloading};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    /// Read and write.
    Write,
}

/// The access one gRPC path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    Nothing,
    User(Access),
    Internal,
}

fn needs(path: &str) -> Needs {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match service {
        "batcher.v1.BatcherService" => Needs::User(Access::Write),
        "index.v1.IndexService" => Needs::User(Access::Read),
        "cache.v1.CacheService" => Needs::Internal,
        s if s.starts_with("grpc.health.") || s.starts_with("grpc.reflection.") => Needs::Nothing,
        // Anything else is answered UNIMPLEMENTED; asking for the most keeps
        // an unauthenticated caller from even probing which services exist.
        _ => Needs::User(Access::Write),
    }
}

/// Authentication flags of the roles (env fallbacks are the operator's contract).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AuthArgs {
    /// Client tokens, one per line: `read TOKEN` or `write TOKEN` (`#`
    /// comments). Set: batcher and index calls need a bearer token.
    #[arg(long, env = "SKYVAULT_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// The roles' own token (one line). Set: the cache serves only callers
    /// presenting it, and the index presents it to the caches.
    #[arg(long, env = "SKYVAULT_INTERNAL_TOKEN_FILE")]
    pub internal_token_file: Option<PathBuf>,
}

/// A text file re-read when it changes (`crate::reload`), parsed by `parse`.
fn reloading<T: 'static>(
    path: &Path,
    parse: fn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<Reloading<T>> {
    let build: Build<T> = Box::new(move |files: &[Vec<u8>]| {
        let text = std::str::from_utf8(&files[0]).map_err(|_| anyhow::anyhow!("not UTF-8 text"))?;
        parse(text)
    });
    Reloading::load(vec![path.into()], build, || {})
}

/// Every client token and what it allows.
pub type Tokens = Vec<(Access, String)>;

/// Parses a tokens file: `read TOKEN` / `write TOKEN` per line.
pub fn parse_tokens(text: &str) -> anyhow::Result<Tokens> {
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (access, token) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            other => anyhow::bail!(
                "line {}: access {other:?} is not `read` or `write` (expected `read TOKEN` or `write TOKEN`)",
                n + 1
            ),
        };
        tokens.push((
            access,
            parse_token(token).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?,
        ));
    }
    anyhow::ensure!(
        !tokens.is_empty(),
        "no token (expected lines `read TOKEN` or `write TOKEN`)"
    );
    Ok(tokens)
}

/// A token file holding one token.
pub fn parse_token(text: &str) -> anyhow::Result<String> {
    let token = text.trim();
    anyhow::ensure!(
        token.len() >= 16,
        "a token must have at least 16 characters"
    );
    anyhow::ensure!(
        token.bytes().all(|b| b.is_ascii_graphic()),
        "a token must be printable ASCII without spaces (it travels in an HTTP header)"
    );
    Ok(token.to_string())
}

/// Equal without an early exit, so response time does not reveal how much of
/// a guess matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credentials a listener checks.
#[derive(Clone, Default)]
pub struct Policy {
    tokens: Option<Arc<Reloading<Tokens>>>,
    internal: Option<Arc<Reloading<String>>>,
}

impl Policy {
    pub fn from_args(args: &AuthArgs) -> anyhow::Result<Self> {
        let tokens = match &args.auth_tokens_file {
            Some(path) => Some(Arc::new(reloading(path, parse_tokens)?)),
            None => None,
        };
        let internal = match &args.internal_token_file {
            Some(path) => Some(Arc::new(reloading(path, parse_token)?)),
            None => None,
        };
        Ok(Policy { tokens, internal })
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none() && self.internal.is_none()
    }

    /// Whether a request for `path` with these headers may proceed.
    pub fn check(
        &self,
        path: &str,
        headers: &tonic::codegen::http::HeaderMap,
    ) -> Result<(), Status> {
        let presented = bearer(headers);
        match needs(path) {
            Needs::Nothing => Ok(()),
            Needs::Internal => {
                let Some(internal) = &self.internal else {
                    return Ok(());
                };
                let presented = presented.ok_or_else(|| {
                    Status::unauthenticated("the cache service needs the roles' internal token")
                })?;
                if same(presented.as_bytes(), internal.get().as_bytes()) {
                    Ok(())
                } else {
                    Err(Status::permission_denied(
                        "the cache service serves only the SkyVault's own roles",
                    ))
                }
            }
            Needs::User(needed) => {
                let Some(tokens) = &self.tokens else {
                    return Ok(());
                };
                let presented = presented.ok_or_else(|| {
                    Status::unauthenticated("missing `authorization: Bearer TOKEN` metadata")
                })?;
                let tokens = tokens.get();
                // Compare against every token (no early exit on a match).
                let granted = tokens
                    .iter()
                    .filter(|(_, t)| same(t.as_bytes(), presented.as_bytes()))
                    .map(|(a, _)| *a)
                    .max();
                match granted {
                    None => Err(Status::unauthenticated("unknown bearer token")),
                    Some(a) if a < needed => Err(Status::permission_denied(format!(
                        "this token may only {}; {path} needs a `{}` token",
                        if a == Access::Read { "read" } else { "write" },
                        if needed == Access::Write {
                            "write"
                        } else {
                            "read"
                        },
                    ))),
                    Some(_) => Ok(()),
                }
            }
        }
    }
}

fn bearer(headers: &tonic::codegen::http::HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `skyvault_auth_rejections_total{code}`.
static REJECTIONS: std::sync::LazyLock<prometheus::IntCounterVec> =
    std::sync::LazyLock::new(|| {
        crate::metrics::counter_vec(
            &crate::metrics::metrics().registry,
            "auth_rejections_total",
            "gRPC requests refused for missing or insufficient credentials",
            &["code"],
        )
    });

/// The tower layer applying a [`Policy`] to every request of a server.
#[derive(Clone)]
pub struct AuthLayer(pub Arc<Policy>);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            policy: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    policy: Arc<Policy>,
}

type Http<B> = tonic::codegen::http::Request<B>;
type Reply = tonic::codegen::http::Response<tonic::body::Body>;

impl<S, B> tower::Service<Http<B>> for AuthService<S>
where
    S: tower::Service<Http<B>, Response = Reply> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Reply;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Reply, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Http<B>) -> Self::Future {
        match self.policy.check(request.uri().path(), request.headers()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                REJECTIONS
                    .with_label_values(&[&format!("{:?}", status.code())])
                    .inc();
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// A token this process presents (re-read from its file when it changes);
/// see `security::Credentials`.
#[derive(Clone)]
pub struct BearerToken(Arc<Reloading<String>>);

impl BearerToken {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        Ok(BearerToken(Arc::new(reloading(path, parse_token)?)))
    }

    pub fn header(&self) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
        let value = format!("Bearer {}", self.0.get());
        // parse_token admits printable ASCII only.
        value.parse().expect("a token is a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: Option<&str>) -> tonic::codegen::http::HeaderMap {
        let mut h = tonic::codegen::http::HeaderMap::new();
        if let Some(t) = token {
            h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        h
    }

    fn policy(dir: &Path) -> Policy {
        std::fs::write(
            dir.join("tokens"),
            "# users\nread reader-token-0123456789\nwrite writer-token-0123456789\n",
        )
        .unwrap();
        std::fs::write(dir.join("internal"), "internal-token-0123456789\n").unwrap();
        Policy::from_args(&AuthArgs {
            auth_tokens_file: Some(dir.join("tokens")),
            internal_token_file: Some(dir.join("internal")),
        })
        .unwrap()
    }

    const WRITE: &str = "/batcher.v1.BatcherService/BatchWrite";
    const READ: &str = "/index.v1.IndexService/BatchGet";
    const CACHE: &str = "/cache.v1.CacheService/Lookup";

    #[test]
    fn each_service_needs_its_access() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path());
        let code = |path, token| p.check(path, &headers(token)).map_err(|s| s.code());
        use tonic::Code::{PermissionDenied, Unauthenticated};
        assert_eq!(code(WRITE, None), Err(Unauthenticated));
        assert_eq!(
            code(WRITE, Some("not-a-known-token-at-all")),
            Err(Unauthenticated)
        );
        assert_eq!(
            code(WRITE, Some("reader-token-0123456789")),
            Err(PermissionDenied)
        );
        assert_eq!(code(WRITE, Some("writer-token-0123456789")), Ok(()));
        assert_eq!(code(READ, Some("reader-token-0123456789")), Ok(()));
        assert_eq!(code(READ, Some("writer-token-0123456789")), Ok(()));
        assert_eq!(
            code(READ, Some("internal-token-0123456789")),
            Err(Unauthenticated)
        );
        assert_eq!(code(CACHE, None), Err(Unauthenticated));
        assert_eq!(
            code(CACHE, Some("writer-token-0123456789")),
            Err(PermissionDenied)
        );
        assert_eq!(code(CACHE, Some("internal-token-0123456789")), Ok(()));
        assert_eq!(code("/grpc.health.v1.Health/Check", None), Ok(()));
        assert_eq!(
            code("/unknown.Service/Call", Some("reader-token-0123456789")),
            Err(PermissionDenied)
        );
    }

    #[test]
    fn a_rotated_tokens_file_takes_effect_and_a_broken_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path());
        std::fs::write(
            dir.path().join("tokens"),
            "write rotated-token-0123456789\n",
        )
        .unwrap();
        p.tokens.as_ref().unwrap().look_again();
        assert!(
            p.check(WRITE, &headers(Some("rotated-token-0123456789")))
                .is_ok()
        );
        assert!(
            p.check(WRITE, &headers(Some("writer-token-0123456789")))
                .is_err()
        );
        std::fs::write(dir.path().join("tokens"), "admin x\n").unwrap();
        p.tokens.as_ref().unwrap().look_again();
        assert!(
            p.check(WRITE, &headers(Some("rotated-token-0123456789")))
                .is_ok()
        );
    }

    #[test]
    fn bad_token_files_name_the_line_and_the_fix() {
        let e = parse_tokens("read short\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("16 characters"), "{e}");
        let e = parse_tokens("admin abcdefghijklmnopqrstuvwxyz\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`read` or `write`"), "{e}");
        assert!(parse_tokens("# nothing\n").is_err());
    }
}
