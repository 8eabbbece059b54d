//! Fault injection for tests: a layer that fails or corrupts chosen requests,
//! so the write and read paths can be proven against a misbehaving store.

use super::{BoxUpload, ObjectMeta, ObjectStore, StoreError, StoreResult, Upload};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::ops::Range;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every request fails as unavailable.
    Down,
    /// Puts fail; reads work.
    FailPuts,
    /// Puts wait until the fault is changed, then behave per the new fault:
    /// holds a flush in flight so tests can fill the queue behind it.
    HangPuts,
    /// Puts land in the store, then their reply waits until the fault is
    /// changed: a flush whose PUT is done and whose commit has not started.
    PutThenHang,
    /// Puts land in the store, then fail as if the reply had been lost.
    LosePutReply,
    /// Each request fails with this probability (per million): at once, after
    /// a 1 s stall (a timeout), or — for a put — after it landed (a lost
    /// reply). For chaos runs of jobs: see [`inject_faults_from_env`].
    Random { per_million: u32 },
    /// Reads return the data with one byte flipped at this offset of the
    /// returned buffer (modulo its length).
    FlipReadByte(usize),
}

#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    fault: Mutex<Option<Fault>>,
    changed: tokio::sync::Notify,
}

impl<S> FaultyStore<S> {
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            fault: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().expect("fault lock") = fault;
        self.changed.notify_waiters();
    }

    async fn wait_while_hung(&self) {
        self.wait_while(Fault::HangPuts).await
    }

    async fn wait_while(&self, fault: Fault) {
        loop {
            let changed = self.changed.notified();
            if self.fault() != Some(fault) {
                return;
            }
            changed.await;
        }
    }

    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().expect("fault lock")
    }

    fn check(&self, is_put: bool) -> StoreResult<()> {
        match self.fault() {
            Some(Fault::Down) => Err(StoreError::Unavailable("injected: store down".into())),
            Some(Fault::FailPuts) if is_put => {
                Err(StoreError::Unavailable("injected: put failed".into()))
            }
            _ => Ok(()),
        }
    }

    /// The faults that strike once a put has landed.
    async fn after_put(&self) -> StoreResult<()> {
        self.wait_while(Fault::PutThenHang).await;
        match self.fault() {
            Some(Fault::LosePutReply) => Err(lost_reply()),
            Some(Fault::Random { per_million }) if roll(per_million) => Err(lost_reply()),
            _ => Ok(()),
        }
    }

    /// [`Fault::Random`]'s error or stall before a request.
    async fn random(&self) -> StoreResult<()> {
        let Some(Fault::Random { per_million }) = self.fault() else {
            return Ok(());
        };
        if !roll(per_million) {
            return Ok(());
        }
        if rand::random::<bool>() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            return Err(StoreError::Unavailable(
                "injected: request timed out".into(),
            ));
        }
        Err(StoreError::Unavailable(
            "injected: random store error".into(),
        ))
    }

    fn maybe_corrupt(&self, data: Bytes) -> Bytes {
        match self.fault() {
            Some(Fault::FlipReadByte(at)) if !data.is_empty() => {
                let mut buf = BytesMut::from(&data[..]);
                let i = at % buf.len();
                buf[i] ^= 0x01;
                buf.freeze()
            }
            _ => data,
        }
    }
}

fn roll(per_million: u32) -> bool {
    rand::random::<u32>() % 1_000_000 < per_million
}

fn lost_reply() -> StoreError {
    StoreError::Unavailable("injected: the put landed but its reply was lost".into())
}

/// The variable that makes [`inject_faults_from_env`] inject faults.
pub const FAULTS_ENV: &str = "SKYVAULT_INJECT_STORE_FAULTS";

/// For chaos runs only: when `SKYVAULT_INJECT_STORE_FAULTS` holds a
/// probability (0 to 1), every request of `store` fails with it (see
/// [`Fault::Random`]). Unset, `store` is returned as it is.
pub fn inject_faults_from_env(store: super::DynStore) -> anyhow::Result<super::DynStore> {
    let Ok(value) = std::env::var(FAULTS_ENV) else {
        return Ok(store);
    };
    let rate: f64 = value
        .parse()
        .ok()
        .filter(|r: &f64| (0.0..=1.0).contains(r))
        .ok_or_else(|| {
            anyhow::anyhow!("{FAULTS_ENV}={value:?}: expected a probability from 0 to 1")
        })?;
    tracing::warn!(rate, "injecting object-store faults ({FAULTS_ENV})");
    let faulty = FaultyStore::new(store);
    faulty.set_fault(Some(Fault::Random {
        per_million: (rate * 1e6) as u32,
    }));
    Ok(std::sync::Arc::new(faulty))
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    async fn put(&self, path: &str, data: Bytes) -> StoreResult<()> {
        self.random().await?;
        self.wait_while_hung().await;
        self.check(true)?;
        self.inner.put(path, data).await?;
        self.after_put().await
    }

    /// Faults apply when the upload starts and when it completes.
    async fn upload<'a>(&'a self, path: &str) -> StoreResult<BoxUpload<'a>> {
        self.random().await?;
        self.wait_while_hung().await;
        self.check(true)?;
        Ok(Box::new(FaultyUpload {
            store: self,
            inner: self.inner.upload(path).await?,
        }))
    }

    async fn get(&self, path: &str) -> StoreResult<Bytes> {
        self.random().await?;
        self.check(false)?;
        Ok(self.maybe_corrupt(self.inner.get(path).await?))
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.random().await?;
        self.check(false)?;
        Ok(self.maybe_corrupt(self.inner.get_range(path, range).await?))
    }

    async fn get_suffix(&self, path: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.random().await?;
        self.check(false)?;
        let (data, size) = self.inner.get_suffix(path, len).await?;
        Ok((self.maybe_corrupt(data), size))
    }

    async fn delete(&self, path: &str) -> StoreResult<()> {
        self.random().await?;
        self.check(true)?;
        self.inner.delete(path).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.random().await?;
        self.check(false)?;
        self.inner.list(prefix).await
    }

    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }
}

struct FaultyUpload<'a, S> {
    store: &'a FaultyStore<S>,
    inner: BoxUpload<'a>,
}

#[async_trait]
impl<S: ObjectStore> Upload for FaultyUpload<'_, S> {
    async fn write(&mut self, data: Bytes) -> StoreResult<()> {
        self.store.check(true)?;
        self.inner.write(data).await
    }

    async fn finish(self: Box<Self>) -> StoreResult<()> {
        self.store.wait_while_hung().await;
        self.store.check(true)?;
        self.inner.finish().await?;
        self.store.after_put().await
    }

    async fn abort(self: Box<Self>) {
        self.inner.abort().await
    }
}
