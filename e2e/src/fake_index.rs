//! A stand-in for the index's HTTP `GET /lsm` (compaction debt), for operator tests
//! that run no data plane.

use anyhow::Result;

/// A stand-in for the index's `GET /lsm`: answers every request with the
/// current body (503 while it is empty) and remembers the last path asked for.
pub struct FakeIndex {
    addr: std::net::SocketAddr,
    body: std::sync::Arc<std::sync::Mutex<String>>,
    last_path: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeIndex {
    pub async fn start(body: &str) -> Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let body = std::sync::Arc::new(std::sync::Mutex::new(body.to_owned()));
        let last_path = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (b, p) = (body.clone(), last_path.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (b, p) = (b.clone(), p.clone());
                tokio::spawn(async move {
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
                    *p.lock().unwrap() = line.split(' ').nth(1).unwrap_or("").to_owned();
                    let text = b.lock().unwrap().clone();
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
