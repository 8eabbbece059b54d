//! Checks every metadata backend must pass, shared by SQLite's unit tests and
//! the PostgreSQL test in e2e/ (which starts a real server). Panics on failure.

use super::{
    ClaimRange, DynMeta, FileKind, FileRecord, MetaError, MetaStore, NewFile, Swap, TierCounts,
};
use std::time::Duration;

fn wal(name: &str, min: &str, max: &str) -> NewFile {
    NewFile {
        object: format!("wal/{name}.sst"),
        kind: FileKind::Wal,
        level: 0,
        min_key: min.into(),
        max_key: max.into(),
        entry_count: 1,
        tombstone_count: 0,
        size_bytes: 100,
    }
}

fn run(name: &str, level: u32, min: &str, max: &str) -> NewFile {
    NewFile {
        object: format!("run/{name}.sst"),
        kind: if level == 0 {
            FileKind::Wal
        } else {
            FileKind::Run
        },
        level,
        min_key: min.into(),
        max_key: max.into(),
        entry_count: 1,
        tombstone_count: 0,
        size_bytes: 100,
    }
}

fn ids(files: Vec<FileRecord>) -> Vec<i64> {
    files.iter().map(|f| f.id).collect()
}

fn range(level: u32, min: &str, max: Option<&str>) -> ClaimRange {
    ClaimRange {
        level,
        min_key: min.into(),
        max_key: max.map(Into::into),
    }
}

/// Commits take versions 1, 2, … and wake subscribers; a reader catches up
/// from any version; reopening the database (`open`, a restart) keeps
/// everything and continues the sequence.
pub async fn commits_are_sequenced_and_caught_up(open: impl AsyncFn() -> DynMeta) {
    let meta = open().await;
    let mut rx = meta.subscribe();
    assert_eq!(meta.commit_wal(wal("a", "a", "c")).await.unwrap(), 1);
    assert_eq!(meta.commit_wal(wal("b", "b", "d")).await.unwrap(), 2);
    assert_eq!(*rx.borrow_and_update(), 2);

    let delta = meta.changes_since(0).await.unwrap();
    assert_eq!(delta.version, 2);
    let seqs: Vec<u64> = delta.added.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert!(meta.changes_since(2).await.unwrap().added.is_empty());

    drop(meta);
    let meta = open().await;
    assert_eq!(meta.current_version().await.unwrap(), 2);
    assert_eq!(meta.commit_wal(wal("c", "x", "y")).await.unwrap(), 3);
    assert_eq!(meta.live_files().await.unwrap().len(), 3);
}

/// A group commit takes consecutive versions in order; a group with a
/// duplicate object commits nothing at all.
pub async fn a_group_commit_takes_consecutive_versions_in_order(meta: &dyn MetaStore) {
    let mut rx = meta.subscribe();
    meta.commit_wal(wal("first", "a", "b")).await.unwrap();
    let group = vec![wal("x", "a", "b"), wal("y", "c", "d"), wal("z", "e", "f")];
    assert_eq!(meta.commit_wals(group).await.unwrap(), vec![2, 3, 4]);
    assert_eq!(*rx.borrow_and_update(), 4);
    let delta = meta.changes_since(1).await.unwrap();
    let added: Vec<(&str, u64)> = delta
        .added
        .iter()
        .map(|f| (f.object.as_str(), f.seq))
        .collect();
    assert_eq!(
        added,
        vec![("wal/x.sst", 2), ("wal/y.sst", 3), ("wal/z.sst", 4)]
    );
    let bad = vec![wal("new", "a", "b"), wal("x", "a", "b")];
    assert!(meta.commit_wals(bad).await.is_err());
    assert_eq!(meta.current_version().await.unwrap(), 4);
    assert_eq!(meta.live_files().await.unwrap().len(), 4);
}

/// A swap replaces live inputs once: a second swap of the same inputs (a
/// racing compaction) changes nothing. Purge may forget replaced rows, never
/// live ones.
pub async fn swap_replaces_live_inputs_once(meta: &dyn MetaStore) {
    meta.commit_wal(wal("a", "a", "c")).await.unwrap();
    meta.commit_wal(wal("b", "b", "d")).await.unwrap();
    let inputs = ids(meta.live_files().await.unwrap());
    let mut output = run("run1", 1, "a", "d");
    let replace = |output: &NewFile| Swap {
        inputs: inputs.clone(),
        outputs: vec![output.clone()],
        seq: 2,
        ..Default::default()
    };
    assert_eq!(meta.swap(replace(&output)).await.unwrap(), 3);
    let live = meta.live_files().await.unwrap();
    assert_eq!(
        (live.len(), live[0].seq, live[0].kind),
        (1, 2, FileKind::Run)
    );
    let delta = meta.changes_since(2).await.unwrap();
    assert_eq!((delta.added.len(), delta.removed_ids.len()), (1, 2));
    // Added and removed after version 0: a fresh reader never sees the inputs.
    let fresh = meta.changes_since(0).await.unwrap();
    assert_eq!((fresh.added.len(), fresh.removed_ids.len()), (1, 0));
    output.object = "run/run2.sst".into();
    let again = meta.swap(replace(&output)).await;
    assert!(matches!(again, Err(MetaError::Conflict(_))), "{again:?}");
    assert_eq!(meta.current_version().await.unwrap(), 3);

    // One replaced input among live ones: nothing changes, not even the live one.
    let live_id = live[0].id;
    let mixed = Swap {
        inputs: vec![live_id, inputs[0]],
        outputs: vec![run("run3", 1, "a", "d")],
        seq: 2,
        ..Default::default()
    };
    let refused = meta.swap(mixed).await;
    assert!(
        matches!(refused, Err(MetaError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(ids(meta.live_files().await.unwrap()), vec![live_id]);
    assert_eq!(meta.current_version().await.unwrap(), 3);
    assert!(
        meta.all_files()
            .await
            .unwrap()
            .iter()
            .all(|f| f.id != live_id || f.removed_at_ms.is_none())
    );

    assert_eq!(meta.all_files().await.unwrap().len(), 3);
    let mut forget = inputs.clone();
    forget.push(live_id);
    meta.forget_files(&forget).await.unwrap();
    assert_eq!(ids(meta.all_files().await.unwrap()), vec![live_id]);
}

/// A lease excludes other holders until it expires or is released, and its
/// holder renews it; a dead holder's expired lease does not block others.
pub async fn leases_exclude_until_expiry(meta: &dyn MetaStore) {
    let long = Duration::from_secs(60);
    assert!(meta.try_lease("compaction", "a", long).await.unwrap());
    assert!(!meta.try_lease("compaction", "b", long).await.unwrap());
    assert!(
        meta.try_lease("compaction", "a", long).await.unwrap(),
        "renewal"
    );
    meta.release_lease("compaction", "a").await.unwrap();
    assert!(
        meta.try_lease("compaction", "b", Duration::ZERO)
            .await
            .unwrap()
    );
    // b's lease expires at once; wait until the clock has moved past it.
    let expired_at = super::now_ms();
    while super::now_ms() <= expired_at {
        tokio::task::yield_now().await;
    }
    assert!(meta.try_lease("compaction", "a", long).await.unwrap());
}

/// A commit of an object already in the manifest fails and takes no version.
pub async fn duplicate_object_is_rejected_without_a_version_bump(meta: &dyn MetaStore) {
    meta.commit_wal(wal("a", "a", "b")).await.unwrap();
    assert!(meta.commit_wal(wal("a", "a", "b")).await.is_err());
    assert_eq!(meta.current_version().await.unwrap(), 1);
    assert_eq!(meta.commit_wal(wal("b", "a", "b")).await.unwrap(), 2);
}

/// Claims exclude overlapping ranges of other jobs per level, renew, expire,
/// and a swap needs its job's live claim and drops it.
pub async fn claims_exclude_and_swaps_check_them(meta: &dyn MetaStore) {
    let ttl = Duration::from_secs(60);
    meta.commit_wal(run("w1", 0, "a", "m")).await.unwrap();
    let id = meta.live_files().await.unwrap()[0].id;
    assert!(
        meta.claim("a", &[range(0, "", None), range(1, "a", Some("m"))], ttl)
            .await
            .unwrap()
    );
    assert!(
        !meta
            .claim("b", &[range(1, "m", Some("z"))], ttl)
            .await
            .unwrap(),
        "overlap on L1"
    );
    assert!(
        meta.claim("b", &[range(2, "m", Some("z"))], ttl)
            .await
            .unwrap(),
        "other level"
    );
    assert!(
        meta.claim("c", &[range(1, "n", Some("z"))], ttl)
            .await
            .unwrap(),
        "disjoint range"
    );
    assert!(meta.renew_claim("a", ttl).await.unwrap());
    let mut held = meta.live_claims().await.unwrap();
    held.sort_by(|x, y| (x.level, &x.min_key).cmp(&(y.level, &y.min_key)));
    assert_eq!(
        held,
        vec![
            range(0, "", None),
            range(1, "a", Some("m")),
            range(1, "n", Some("z")),
            range(2, "m", Some("z")),
        ],
        "live_claims lists every held range"
    );
    // A swap by a job without a claim changes nothing.
    let version = meta.current_version().await.unwrap();
    let lost = Swap {
        inputs: vec![id],
        outputs: vec![run("r1", 1, "a", "m")],
        seq: 1,
        claim: Some("nobody".into()),
        ..Default::default()
    };
    assert!(matches!(meta.swap(lost).await, Err(MetaError::Conflict(_))));
    assert_eq!(meta.current_version().await.unwrap(), version);
    // With its claim it installs, and the claim is gone afterwards.
    let ok = Swap {
        inputs: vec![id],
        outputs: vec![run("r1", 1, "a", "m")],
        seq: 1,
        claim: Some("a".into()),
        ..Default::default()
    };
    meta.swap(ok).await.unwrap();
    assert!(
        !meta.renew_claim("a", ttl).await.unwrap(),
        "the swap dropped the claim"
    );
    assert!(
        meta.claim("d", &[range(1, "a", Some("c"))], ttl)
            .await
            .unwrap()
    );
    // An expired claim belongs to nobody: its ranges can be claimed again.
    meta.release_claim("d").await.unwrap();
    assert!(
        meta.claim("e", &[range(3, "a", Some("c"))], Duration::ZERO)
            .await
            .unwrap()
    );
    assert!(!meta.renew_claim("e", ttl).await.unwrap());
    assert!(
        !meta
            .live_claims()
            .await
            .unwrap()
            .iter()
            .any(|r| r.level == 3),
        "an expired claim is not listed"
    );
    assert!(
        meta.claim("f", &[range(3, "a", Some("c"))], ttl)
            .await
            .unwrap()
    );
}

/// A trivial move changes a live file's level in place and a reader that
/// knew the file learns the new level from `changes_since`.
pub async fn moves_change_levels_and_are_reported(meta: &dyn MetaStore) {
    meta.commit_wal(run("m1", 0, "a", "b")).await.unwrap();
    let file = meta.live_files().await.unwrap().remove(0);
    let seen = meta.current_version().await.unwrap();
    let move_down = |from, to| Swap {
        moves: vec![(file.id, from, to)],
        ..Default::default()
    };
    let v = meta.swap(move_down(1, 2)).await;
    assert!(matches!(v, Err(MetaError::Conflict(_))), "not at level 1");
    meta.swap(move_down(0, 1)).await.unwrap();
    let delta = meta.changes_since(seen).await.unwrap();
    assert_eq!(delta.added.len(), 1);
    assert_eq!((delta.added[0].id, delta.added[0].level), (file.id, 1));
    // Moved, then replaced: a reader that knew the file is told it is gone.
    let swap = Swap {
        inputs: vec![file.id],
        outputs: vec![run("m2", 2, "a", "b")],
        seq: file.seq,
        ..Default::default()
    };
    meta.swap(swap).await.unwrap();
    let delta = meta.changes_since(seen).await.unwrap();
    assert_eq!(delta.removed_ids, vec![file.id]);
    assert_eq!(delta.added.len(), 1);
    assert_eq!(delta.added[0].level, 2);
}

/// After purge forgets the row of a removed file, a reader whose version is
/// older than that removal gets the whole live manifest (it could not learn
/// of the removal from a delta any more); a reader that knew it gets a delta.
pub async fn forgotten_removals_force_a_full_reload(meta: &dyn MetaStore) {
    meta.commit_wal(run("f1", 0, "a", "b")).await.unwrap();
    meta.commit_wal(run("f2", 0, "c", "d")).await.unwrap();
    let behind = meta.current_version().await.unwrap();
    let live = meta.live_files().await.unwrap();
    let old = live.iter().find(|f| f.object == "run/f1.sst").unwrap().id;
    let swap = Swap {
        inputs: vec![old],
        outputs: vec![run("f3", 1, "a", "b")],
        seq: behind,
        ..Default::default()
    };
    let knew = meta.swap(swap).await.unwrap();
    let delta = meta.changes_since(behind).await.unwrap();
    assert_eq!((delta.full, delta.removed_ids.clone()), (false, vec![old]));
    meta.forget_files(&[old]).await.unwrap();
    let delta = meta.changes_since(behind).await.unwrap();
    assert!(delta.full, "behind a forgotten removal: {delta:?}");
    assert!(delta.removed_ids.is_empty());
    let mut objects: Vec<&str> = delta.added.iter().map(|f| f.object.as_str()).collect();
    objects.sort();
    let all_live = meta.live_files().await.unwrap().len();
    assert_eq!(objects.len(), all_live);
    assert!(!objects.contains(&"run/f1.sst") && objects.contains(&"run/f3.sst"));
    assert!(!meta.changes_since(knew).await.unwrap().full);
}

/// Writer intents: a commit of a file named by a live intent goes through,
/// one of an expired (or soon expiring) intent commits nothing, an expired
/// intent is never renewed, and `live_writers` lists only live ones.
pub async fn writer_intents_gate_commits(meta: &dyn MetaStore) {
    use crate::writer_intent::{COMMIT_MARGIN, INTENT_TTL, wal_object_name};
    let wal = |object: String| NewFile {
        object,
        ..wal("", "a", "b")
    };
    let (live, short, gone) = ("000000000000000a", "000000000000000b", "000000000000000c");
    meta.register_writer(live, INTENT_TTL).await.unwrap();
    meta.register_writer(short, COMMIT_MARGIN / 2)
        .await
        .unwrap();
    meta.register_writer(gone, Duration::from_millis(1))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while meta.live_writers().await.unwrap().contains(&gone.into()) {
        assert!(std::time::Instant::now() < deadline, "intent never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut writers = meta.live_writers().await.unwrap();
    writers.sort();
    assert_eq!(writers, vec![live.to_string(), short.to_string()]);
    assert!(meta.renew_writer(live, INTENT_TTL).await.unwrap());
    assert!(!meta.renew_writer(gone, INTENT_TTL).await.unwrap());
    let version = meta.current_version().await.unwrap();
    for lapsed in [short, gone] {
        // A group with one lapsed writer commits nothing, not even the live one's file.
        let group = vec![wal(wal_object_name(live)), wal(wal_object_name(lapsed))];
        let err = meta.commit_wals(group).await.unwrap_err();
        assert!(matches!(err, MetaError::Conflict(_)), "{err:?}");
        assert!(err.to_string().contains(lapsed), "{err}");
    }
    assert_eq!(meta.current_version().await.unwrap(), version);
    let seqs = meta
        .commit_wals(vec![
            wal(wal_object_name(live)),
            wal("wal/legacy.sst".into()),
        ])
        .await
        .unwrap();
    assert_eq!(seqs, vec![version + 1, version + 2]);
}

/// The store id is recorded once: a second, different id does not replace it,
/// and concurrent first recordings all learn the same winner.
pub async fn store_id_is_recorded_once(meta: &dyn MetaStore) {
    assert_eq!(meta.store_id().await.unwrap(), None);
    let (a, b) = tokio::join!(meta.init_store_id("first"), meta.init_store_id("second"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both learn the winner");
    assert_eq!(meta.init_store_id("third").await.unwrap(), a);
    assert_eq!(meta.store_id().await.unwrap(), Some(a));
}

/// The WAL-tier and L0 counts the batchers poll (write stalls, the WAL
/// flush) agree with the rule readers apply (`FileRecord::is_wal_tier`):
/// intra-L0 outputs of earlier versions (kind 'wal' under run/) are L0, and
/// a flushed WAL file no longer counts.
pub async fn tier_counts_follow_the_wal_tier_rule(meta: &dyn MetaStore) {
    let sized = |name: &str, size_bytes| NewFile {
        size_bytes,
        ..wal(name, "a", "b")
    };
    let l0 = NewFile {
        kind: FileKind::Run,
        tombstone_count: 1,
        ..run("l0", 0, "c", "d")
    };
    let files = vec![
        sized("t1", 10),
        sized("t2", 32),
        run("legacy-l0", 0, "a", "z"),
        l0,
        run("deep", 3, "a", "z"),
    ];
    meta.commit_wals(files).await.unwrap();
    let counts = meta.tier_counts().await.unwrap();
    let want = TierCounts {
        wal_files: 2,
        wal_bytes: 42,
        l0_files: 2,
    };
    assert_eq!(counts, want);
    let levels = crate::lsm::Levels::new(meta.live_files().await.unwrap());
    let seen = (
        levels.wal.len() as u64,
        levels.wal_bytes(),
        levels.l0.len() as u64,
    );
    assert_eq!(seen, (2, 42, 2), "the readers' rule agrees");
    let tombstones: Vec<u64> = levels.l0.iter().map(|f| f.tombstone_count).collect();
    assert!(
        tombstones.contains(&1),
        "tombstone counts round-trip: {tombstones:?}"
    );
    let t1 = levels
        .wal
        .iter()
        .find(|f| f.object == "wal/t1.sst")
        .unwrap();
    let swap = Swap {
        inputs: vec![t1.id],
        seq: t1.seq,
        ..Default::default()
    };
    meta.swap(swap).await.unwrap();
    let after = meta.tier_counts().await.unwrap();
    assert_eq!(
        (after.wal_files, after.wal_bytes),
        (1, 32),
        "replaced rows do not count"
    );
    assert_eq!(
        meta.dead_bytes().await.unwrap(),
        10,
        "until purge forgets them, they are dead bytes"
    );
    meta.forget_files(&[t1.id]).await.unwrap();
    assert_eq!(meta.dead_bytes().await.unwrap(), 0);
}

/// Claims, their margins and removal times follow the database's clock,
/// whatever this process's clock says (decision 0009): a claim taken ten
/// minutes "in the past" is live ten minutes "in the future"; a swap needs
/// its claim live for `CLAIM_MARGIN`; purge sees a claim for `CLAIM_MARGIN`
/// after it expires; a removal is stamped with the database's time.
pub async fn claims_and_removals_follow_the_database_clock(meta: &dyn MetaStore) {
    const MINUTE_MS: i64 = 60_000;
    let ttl = Duration::from_secs(60);
    meta.commit_wal(run("w1", 0, "a", "m")).await.unwrap();
    let id = meta.live_files().await.unwrap()[0].id;

    super::set_clock_skew_ms(-10 * MINUTE_MS);
    assert!(
        meta.claim("late", &[range(0, "", None)], ttl)
            .await
            .unwrap()
    );
    super::set_clock_skew_ms(10 * MINUTE_MS);
    assert_eq!(
        meta.live_claim_jobs().await.unwrap(),
        vec!["late".to_string()]
    );
    assert_eq!(meta.live_claims().await.unwrap(), vec![range(0, "", None)]);
    assert!(meta.renew_claim("late", ttl).await.unwrap());
    meta.release_claim("late").await.unwrap();

    // Live, but for less than the margin: the swap is refused.
    let short = super::CLAIM_MARGIN / 2;
    assert!(
        meta.claim("short", &[range(0, "", None)], short)
            .await
            .unwrap()
    );
    let swap = |job: &str| Swap {
        inputs: vec![id],
        outputs: vec![run(&format!("{job}-out"), 1, "a", "m")],
        seq: 1,
        claim: Some(job.into()),
        ..Default::default()
    };
    let refused = meta.swap(swap("short")).await;
    assert!(
        matches!(&refused, Err(MetaError::Conflict(m)) if m.contains("expires within")),
        "{refused:?}"
    );
    // Expired, yet purge keeps its outputs for the margin after expiry,
    // while other jobs may already claim its ranges.
    assert!(
        meta.claim("gone", &[range(1, "", None)], Duration::ZERO)
            .await
            .unwrap()
    );
    assert!(
        meta.live_claim_jobs()
            .await
            .unwrap()
            .contains(&"gone".to_string())
    );
    assert!(
        meta.claim("next", &[range(1, "", None)], ttl)
            .await
            .unwrap()
    );
    meta.release_claim("short").await.unwrap();

    assert!(meta.claim("ok", &[range(0, "", None)], ttl).await.unwrap());
    meta.swap(swap("ok")).await.unwrap();
    super::set_clock_skew_ms(0);
    let db_now = meta.clock_ms().await.unwrap();
    let removed = meta
        .all_files()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.id == id)
        .and_then(|f| f.removed_at_ms)
        .expect("the input is removed");
    assert!(
        (db_now - removed).abs() < MINUTE_MS,
        "removal stamped {removed}, the database's clock says {db_now}"
    );
}
