//! A stand-in for the index's HTTP `GET /lsm` (compaction debt), for operator tests
//! that run no data plane.

use anyhow::Result;

/// A stand-in for the index's `GET /lsm`: answers every request with the
/// current body (503 while it is empty) and remembers the last path asked for.
pub struct FakeIndex {
    addr: std::net::SocketAddr,
    body: Shared,
    last_path: Shared,
    task: tokio::task::JoinHandle<()>,
}

type Shared = std::sync::Arc<std::sync::Mutex<String>>;

impl FakeIndex {
    pub async fn start(body: &str) -> Result<Self> {
        Self::start_with(body, None).await
    }

    /// Serving HTTPS with `tls` (as an index of a SkyVault with `spec.tls` does).
    pub async fn start_tls(
        body: &str,
        tls: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> Result<Self> {
        Self::start_with(body, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(body: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let body = std::sync::Arc::new(std::sync::Mutex::new(body.to_owned()));
        let last_path = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (b, p) = (body.clone(), last_path.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (b, p, tls) = (b.clone(), p.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => answer(conn, &b, &p).await,
                        Some(tls) => {
                            if let Ok(conn) = tls.accept(conn).await {
                                answer(conn, &b, &p).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            body,
            last_path,
            task,
        })
    }

    pub fn set(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_owned();
    }

    pub fn last_path(&self) -> String {
        self.last_path.lock().unwrap().clone()
    }

    /// The operator flag pointing the debt reading here.
    pub fn url_flag(&self) -> String {
        format!(
            "--lsm-url-template=http://{}/{{namespace}}/{{name}}/lsm",
            self.addr
        )
    }
}

impl Drop for FakeIndex {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request on `conn`, records its path in `path` and answers with `body`.
async fn answer<S>(mut conn: S, body: &Shared, path: &Shared)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    *path.lock().unwrap() = line.split(' ').nth(1).unwrap_or("").to_owned();
    let text = body.lock().unwrap().clone();
    let (status, text) = if text.is_empty() {
        ("503 Service Unavailable", "not ready".to_owned())
    } else {
        ("200 OK", text)
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = conn.write_all(resp.as_bytes()).await;
    let _ = conn.shutdown().await;
}
