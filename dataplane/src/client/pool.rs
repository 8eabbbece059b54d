//! Client-side load balancing: the addresses behind each configured
//! endpoint, one lazily connected channel per address, calls spread
//! round-robin. A Kubernetes client Service balances connections, not
//! calls (L4), so one HTTP/2 connection would stick to one Pod; resolving the
//! headless Service instead gives one address per ready Pod. Names are
//! resolved again periodically (Pods come and go), and an address whose
//! connection failed is skipped for a while.

use super::ClientError;
use super::options::{ClientOptions, as_uri};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tonic::transport::Channel;

/// Resolves a host name to addresses: the system's DNS by default
/// ([`DnsResolver`]); implement it for a discovery service of your own.
#[async_trait::async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// Every address of `host:port`; an error or none keeps the previous ones.
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`), as `tokio::net::lookup_host`.
pub struct DnsResolver;

#[async_trait::async_trait]
impl Resolve for DnsResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

struct Member {
    /// Index of the configured endpoint this address came from.
    origin: usize,
    uri: String,
    channel: Channel,
    ejected_until: Option<Instant>,
}

/// The addresses of one role's endpoints (batchers, or indexes).
pub(super) struct Pool {
    targets: Vec<String>,
    options: ClientOptions,
    members: Mutex<Members>,
    /// A re-resolution started because every address failed is running:
    /// calls meanwhile do not start more.
    refreshing: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Members {
    list: Vec<Member>,
    next: usize,
}

/// One pick: the address (to report a failure against) and its channel.
pub(super) struct Picked {
    pub uri: String,
    pub channel: Channel,
}

impl Pool {
    /// Resolves `targets` and keeps them resolved every
    /// `options.resolve_interval` for as long as the pool lives.
    pub(super) async fn start(
        targets: &[String],
        options: &ClientOptions,
    ) -> Result<Arc<Pool>, ClientError> {
        if targets.is_empty() {
            return Err(ClientError::InvalidOption("no endpoints given".into()));
        }
        let pool = Arc::new(Pool {
            targets: targets.iter().map(|t| as_uri(t)).collect(),
            options: options.clone(),
            members: Mutex::new(Members::default()),
            refreshing: Default::default(),
        });
        for target in &pool.targets {
            options.endpoint(target)?; // a bad address fails now, not on every call
        }
        pool.refresh().await?;
        tokio::spawn(refresh_every(Arc::downgrade(&pool)));
        Ok(pool)
    }

    /// Resolves every target again; addresses already known keep their
    /// connection, new ones get one, vanished ones are dropped. A target that
    /// does not resolve keeps what it had (a DNS hiccup is not a departure).
    pub(super) async fn refresh(&self) -> Result<(), ClientError> {
        let mut resolved = Vec::new();
        for (origin, target) in self.targets.iter().enumerate() {
            resolved.push((origin, self.addresses(target).await));
        }
        let mut members = self.members.lock().expect("pool lock");
        let mut old = std::mem::take(&mut members.list);
        for (origin, found) in resolved {
            let uris = match found {
                Some(uris) => uris,
                None if old.iter().any(|m| m.origin == origin) => {
                    members
                        .list
                        .extend(extract(&mut old, |m| m.origin == origin));
                    continue;
                }
                None => vec![self.targets[origin].clone()],
            };
            for uri in uris {
                let kept = extract(&mut old, |m| m.uri == uri).into_iter().next();
                let member = match kept {
                    Some(member) => member,
                    None => Member {
                        origin,
                        channel: self.options.channel(&uri, &self.targets[origin])?,
                        uri,
                        ejected_until: None,
                    },
                };
                members.list.push(member);
            }
        }
        Ok(())
    }

    /// `http://IP:PORT` for every address of a target's name; `None` when it
    /// is not to be resolved (a literal IP, `https`: TLS needs the name) or
    /// did not resolve.
    async fn addresses(&self, target: &str) -> Option<Vec<String>> {
        let uri: tonic::codegen::http::Uri = target.parse().ok()?;
        let (host, port) = (uri.host()?, uri.port_u16()?);
        let literal = host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok();
        if uri.scheme_str() != Some("http") || literal {
            return None;
        }
        let mut addrs = self.options.resolver.resolve(host, port).await.ok()?;
        addrs.sort();
        addrs.dedup();
        let uris: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
        (!uris.is_empty()).then_some(uris)
    }

    /// The next address round-robin, skipping ejected ones; when every one
    /// is ejected, the one whose ejection ends first (better a likely failure
    /// than none at all) — and a re-resolution, as the set may have moved.
    pub(super) fn pick(self: &Arc<Self>) -> Picked {
        let now = Instant::now();
        let mut members = self.members.lock().expect("pool lock");
        let n = members.list.len();
        let start = members.next;
        let healthy = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| members.list[i].ejected_until.is_none_or(|t| t <= now));
        let chosen = healthy.unwrap_or_else(|| {
            self.refresh_soon();
            (0..n)
                .min_by_key(|&i| members.list[i].ejected_until)
                .expect("a pool has members")
        });
        members.next = (chosen + 1) % n;
        let member = &members.list[chosen];
        Picked {
            uri: member.uri.clone(),
            channel: member.channel.clone(),
        }
    }

    /// Re-resolves in the background, unless that is already under way.
    fn refresh_soon(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            if let Err(e) = pool.refresh().await {
                tracing::warn!(error = %e, "re-resolving SkyVault endpoints failed");
            }
            pool.refreshing.store(false, Ordering::SeqCst);
        });
    }

    /// Skips `uri` for the ejection period (its connection failed).
    pub(super) fn eject(&self, uri: &str) {
        let until = Instant::now() + self.options.eject_for;
        let mut members = self.members.lock().expect("pool lock");
        for member in members.list.iter_mut().filter(|m| m.uri == uri) {
            member.ejected_until = Some(until);
        }
    }

    /// The addresses in use, for tests and diagnostics.
    pub(super) fn addresses_in_use(&self) -> Vec<String> {
        let members = self.members.lock().expect("pool lock");
        members.list.iter().map(|m| m.uri.clone()).collect()
    }
}

/// Removes and returns the members matching `f`.
fn extract(list: &mut Vec<Member>, f: impl Fn(&Member) -> bool) -> Vec<Member> {
    let (taken, kept) = std::mem::take(list).into_iter().partition(|m| f(m));
    *list = kept;
    taken
}

async fn refresh_every(pool: Weak<Pool>) {
    let Some(every) = pool.upgrade().map(|p| p.options.resolve_interval) else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        if let Err(e) = pool.refresh().await {
            tracing::warn!(error = %e, "re-resolving SkyVault endpoints failed; keeping the old ones");
        }
    }
}
