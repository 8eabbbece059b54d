//! Services outside the cluster (a database, an S3 server on loopback) made reachable
//! from pods.

use std::net::IpAddr;

use anyhow::{Context, Result};

use super::NODE_IP;

/// Makes a service that listens on loopback reachable from pods: a TCP
/// forwarder on `NODE_IP` (a free port) to `127.0.0.1:target_port`, running
/// until the returned handle is dropped. This is how the tests give pods a
/// database and an S3 server "outside the cluster".
pub async fn expose_to_pods(target_port: u16) -> Result<(u16, Forwarder)> {
    expose_on(NODE_IP.parse()?, target_port).await
}

/// [`expose_to_pods`] on any address of this machine that the pods can reach
/// (another cluster's bridge, e.g. kind's Docker network gateway).
pub async fn expose_on(address: IpAddr, target_port: u16) -> Result<(u16, Forwarder)> {
    let listener = tokio::net::TcpListener::bind((address, 0))
        .await
        .with_context(|| format!("listen on {address}"))?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok((port, Forwarder(task)))
}

/// Stops its forwarder when dropped.
#[derive(Debug)]
pub struct Forwarder(tokio::task::JoinHandle<()>);

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}
