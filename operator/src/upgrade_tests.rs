use super::*;
use crate::statefulset::stateful_set;
use crate::status::{ConditionInput, DEGRADED, PROGRESSING, conditions};
use crate::testutil::{job_with, sample, ts};
use k8s_openapi::api::apps::v1::StatefulSetStatus;

const OLD: &str = "skyvault:old";

fn desired(sv: &SkyVault) -> Vec<(Role, StatefulSet)> {
    Role::ALL
        .iter()
        .map(|r| (*r, stateful_set(sv, *r, "new-sum")))
        .collect()
}

/// A StatefulSet as stored: built for `image`, with the status its controller writes once
/// every Pod runs it (`rolled_out`) or while the last Pod is still being replaced.
fn stored(sv: &SkyVault, role: Role, image: &str, rolled_out: bool) -> (Role, StatefulSet) {
    let mut old = sv.clone();
    old.spec.image = image.into();
    let mut sts = stateful_set(&old, role, "old-sum");
    sts.metadata.generation = Some(4);
    let n = sts.spec.replicas.unwrap_or(1);
    sts.status = Some(StatefulSetStatus {
        observed_generation: Some(4),
        replicas: n,
        ready_replicas: Some(if rolled_out { n } else { n - 1 }),
        updated_replicas: Some(n),
        current_revision: Some("r1".into()),
        update_revision: Some("r1".into()),
        ..StatefulSetStatus::default()
    });
    (role, sts)
}

fn all_stored(sv: &SkyVault, image: &str) -> Vec<(Role, StatefulSet)> {
    Role::ALL
        .iter()
        .map(|r| stored(sv, *r, image, true))
        .collect()
}

fn image(plan: &RollPlan, role: Role) -> &str {
    let (_, sts) = plan.stateful_sets.iter().find(|(r, _)| *r == role).unwrap();
    image_of(sts).unwrap()
}

fn migrate_job_for(sv: &SkyVault, image: &str, attempt: u32, result: Option<JobResult>) -> Job {
    let name = job_name(sv, image, attempt);
    let mut job = job_with(&name, "2030-01-01T00:00:00Z", result, None);
    let ann = job.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(IMAGE_ANNOTATION.into(), image.into());
    ann.insert(ATTEMPT_ANNOTATION.into(), attempt.to_string());
    job
}

#[test]
fn migrate_job_runs_the_new_image_with_only_the_database_secret() {
    let sv = sample();
    let job = migrate_job(&sv, 1, "sum");
    assert_eq!(
        job.metadata.labels.as_ref().unwrap()[JOB_KIND_LABEL],
        MIGRATE
    );
    let ann = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[IMAGE_ANNOTATION], "skyvault:test");
    assert_eq!(ann[ATTEMPT_ANNOTATION], "1");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(MIGRATE_BACKOFF_LIMIT));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("skyvault:test"));
    assert_eq!(c.args.as_ref().unwrap(), &vec!["migrate".to_string()]);
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(env, vec!["SKYVAULT_METADATA_URL"]);
    let url = &c.env.as_ref().unwrap()[0];
    let key = url.value_from.as_ref().unwrap().secret_key_ref.as_ref();
    assert_eq!(key.map(|k| k.name.as_str()), Some("pg"));
}

#[test]
fn job_names_differ_per_image_and_attempt_and_fit_a_label() {
    let mut sv = sample();
    assert_eq!(job_name(&sv, "a:1", 1), job_name(&sv, "a:1", 1));
    assert_ne!(job_name(&sv, "a:1", 1), job_name(&sv, "a:2", 1));
    assert_ne!(job_name(&sv, "a:1", 1), job_name(&sv, "a:1", 2));
    sv.metadata.name = Some("a".repeat(crate::crd::MAX_NAME_LEN));
    assert!(job_name(&sv, "a:1", 99_999).len() <= 63);
}

#[test]
fn a_migration_is_needed_only_when_a_statefulset_runs_another_image() {
    let sv = sample();
    assert!(!needed(&sv, &[]), "a new store's Pods migrate on start");
    assert!(!needed(&sv, &all_stored(&sv, "skyvault:test")));
    let mut mixed = all_stored(&sv, "skyvault:test");
    mixed[2] = stored(&sv, Role::Cache, OLD, true);
    assert!(needed(&sv, &mixed));
}

#[test]
fn the_first_need_creates_attempt_one_and_a_running_job_is_waited_for() {
    let sv = sample();
    let now = ts("2030-01-01T02:00:00Z");
    let plan = plan_migration(&sv, true, &[], now, "sum");
    let job = plan.create.expect("a Job");
    assert_eq!(job.metadata.name, Some(job_name(&sv, "skyvault:test", 1)));
    assert!(matches!(plan.state, Migration::Running { .. }));

    let running = migrate_job_for(&sv, "skyvault:test", 1, None);
    let plan = plan_migration(&sv, true, &[running], now, "sum");
    assert!(plan.create.is_none());
    assert_eq!(
        plan.state,
        Migration::Running {
            job: job_name(&sv, "skyvault:test", 1)
        }
    );
    assert!(!plan.state.open());
}

#[test]
fn a_failed_attempt_is_retried_after_a_doubling_backoff() {
    let sv = sample();
    // job_with finishes Jobs at 01:00:00.
    let failed = migrate_job_for(&sv, "skyvault:test", 2, Some(JobResult::Failed));
    let soon = ts("2030-01-01T01:00:30Z");
    let plan = plan_migration(&sv, true, std::slice::from_ref(&failed), soon, "sum");
    assert!(plan.create.is_none(), "attempt 2 failed: wait 60 s");
    let Migration::Failed {
        job,
        message,
        retry_at,
    } = &plan.state
    else {
        panic!("{:?}", plan.state)
    };
    assert_eq!(job, &job_name(&sv, "skyvault:test", 2));
    assert!(message.contains("backoff limit"), "{message}");
    assert_eq!(*retry_at, ts("2030-01-01T01:01:00Z"));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(30)));
    assert!(!plan.state.open());

    let later = ts("2030-01-01T01:01:00Z");
    let plan = plan_migration(&sv, true, &[failed], later, "sum");
    let next = plan.create.expect("attempt 3");
    assert_eq!(next.metadata.name, Some(job_name(&sv, "skyvault:test", 3)));
    assert_eq!(retry_delay(1), Duration::from_secs(30));
    assert_eq!(retry_delay(30), RETRY_MAX);
}

#[test]
fn success_opens_the_gate_and_history_keeps_only_the_latest_attempt() {
    let sv = sample();
    let jobs = [
        migrate_job_for(&sv, "skyvault:test", 1, Some(JobResult::Failed)),
        migrate_job_for(&sv, "skyvault:test", 2, Some(JobResult::Succeeded)),
        migrate_job_for(&sv, OLD, 1, Some(JobResult::Succeeded)),
        migrate_job_for(&sv, "skyvault:other", 1, None),
    ];
    let plan = plan_migration(&sv, true, &jobs, ts("2030-01-02T00:00:00Z"), "sum");
    assert!(plan.state.open());
    assert!(plan.create.is_none());
    let mut deleted = plan.delete.clone();
    deleted.sort();
    let mut want = vec![job_name(&sv, "skyvault:test", 1), job_name(&sv, OLD, 1)];
    want.sort();
    assert_eq!(deleted, want, "a running Job of another image finishes");
    let done = plan_migration(&sv, false, &jobs, ts("2030-01-02T00:00:00Z"), "sum");
    assert_eq!(done.state, Migration::NotNeeded);
    assert!(done.create.is_none());
}

#[test]
fn maintenance_jobs_run_the_batchers_image_and_wait_only_where_it_cannot_start() {
    let sv = sample(); // image skyvault:test
    let job = || "j".to_string();
    let old_batcher = stored(&sv, Role::Batcher, OLD, true).1;
    let new_batcher = stored(&sv, Role::Batcher, "skyvault:test", true).1;
    let image = |m: &Migration, b: Option<&StatefulSet>| maintenance_image(&sv, m, b);
    // No upgrade: the spec's image (a new store has no batcher yet).
    assert_eq!(
        image(&Migration::NotNeeded, None).as_deref(),
        Some("skyvault:test")
    );
    assert_eq!(
        image(&Migration::NotNeeded, Some(&new_batcher)).as_deref(),
        Some("skyvault:test")
    );
    // A failing migration: the old batchers keep writing, and compaction and purge keep
    // running with their image.
    let failed = Migration::Failed {
        job: job(),
        message: String::new(),
        retry_at: ts("2030-01-01T00:00:00Z"),
    };
    assert_eq!(image(&failed, Some(&old_batcher)).as_deref(), Some(OLD));
    // An attempt running, or migrated while the batcher still runs the old image: the old
    // binary would refuse the schema, the new one would write before the readers roll.
    assert_eq!(
        image(&Migration::Running { job: job() }, Some(&old_batcher)),
        None
    );
    let migrated = Migration::Succeeded { job: job() };
    assert_eq!(image(&migrated, Some(&old_batcher)), None);
    // The batcher has the new template: the new image.
    assert_eq!(
        image(&migrated, Some(&new_batcher)).as_deref(),
        Some("skyvault:test")
    );
}

#[test]
fn while_the_migration_runs_every_role_keeps_its_old_template() {
    let mut sv = sample();
    sv.spec.index.replicas = 3;
    let migration = Migration::Running { job: "j".into() };
    let plan = plan_roll(&desired(&sv), &all_stored(&sv, OLD), &migration);
    for role in Role::ALL {
        assert_eq!(image(&plan, role), OLD, "{role:?}");
    }
    let (_, index) = &plan.stateful_sets[1];
    assert_eq!(index.spec.replicas, Some(3), "scaling is not held");
    assert!(plan.released.is_empty());
    assert_eq!(plan.held.len(), 3);
    assert!(
        plan.held[0].1.contains("migration Job j"),
        "{:?}",
        plan.held
    );
}

#[test]
fn after_the_migration_the_cache_rolls_first_and_the_others_wait() {
    let sv = sample();
    let plan = plan_roll(
        &desired(&sv),
        &all_stored(&sv, OLD),
        &Migration::Succeeded { job: "j".into() },
    );
    assert_eq!(image(&plan, Role::Cache), "skyvault:test");
    assert_eq!(image(&plan, Role::Index), OLD);
    assert_eq!(image(&plan, Role::Batcher), OLD);
    assert_eq!(plan.released, vec![Role::Cache]);
    let order: Vec<Role> = plan.stateful_sets.iter().map(|(r, _)| *r).collect();
    assert_eq!(order, Role::ALL.to_vec(), "applied in the usual order");
}

#[test]
fn each_role_waits_until_the_one_before_has_rolled_out() {
    let sv = sample();
    let open = Migration::Succeeded { job: "j".into() };
    let new = "skyvault:test";
    // The cache has the new template but its last Pod is not ready yet.
    let mut sets = all_stored(&sv, OLD);
    sets[2] = stored(&sv, Role::Cache, new, false);
    let plan = plan_roll(&desired(&sv), &sets, &open);
    assert_eq!(image(&plan, Role::Index), OLD);
    assert_eq!(image(&plan, Role::Batcher), OLD);
    assert!(
        plan.held[0].1.contains("cache to roll out"),
        "{:?}",
        plan.held
    );

    // Cache done: the index goes, the batcher still waits.
    sets[2] = stored(&sv, Role::Cache, new, true);
    let plan = plan_roll(&desired(&sv), &sets, &open);
    assert_eq!(plan.released, vec![Role::Index]);
    assert_eq!(image(&plan, Role::Batcher), OLD);

    // Index done: the writers go last.
    sets[1] = stored(&sv, Role::Index, new, true);
    let plan = plan_roll(&desired(&sv), &sets, &open);
    assert_eq!(plan.released, vec![Role::Batcher]);
    assert!(plan.held.is_empty());
}

#[test]
fn a_configuration_change_or_a_new_store_rolls_at_once() {
    let sv = sample();
    // Same image, one role not rolled out: nothing is held.
    let mut sets = all_stored(&sv, "skyvault:test");
    sets[2] = stored(&sv, Role::Cache, "skyvault:test", false);
    let plan = plan_roll(&desired(&sv), &sets, &Migration::NotNeeded);
    assert!(plan.held.is_empty() && plan.released.is_empty());
    for (role, sts) in &plan.stateful_sets {
        let (_, want) = desired(&sv).into_iter().find(|(r, _)| r == role).unwrap();
        assert_eq!(sts, &want, "{role:?} applied as built");
    }
    let fresh = plan_roll(&desired(&sv), &[], &Migration::NotNeeded);
    assert_eq!(fresh.stateful_sets.len(), 3);
    assert!(fresh.held.is_empty());
}

fn upgrade_conditions(
    upgrade: &UpgradeCondition,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions(&ConditionInput {
        generation: Some(3),
        problem: None,
        roles: &[],
        last_compaction: None,
        last_purge: None,
        upgrade: Some(upgrade),
        previous: &[],
        now: ts("2030-01-01T00:00:00Z"),
    })
}

#[test]
fn a_failed_migration_degrades_and_stops_progress_naming_the_job() {
    let sv = sample();
    let migration = Migration::Failed {
        job: "vault-migrate-1".into(),
        message: "BackoffLimitExceeded".into(),
        retry_at: ts("2030-01-01T00:01:00Z"),
    };
    let roll = plan_roll(&desired(&sv), &all_stored(&sv, OLD), &migration);
    let cond = condition(&sv, &migration, &roll).unwrap();
    let cs = upgrade_conditions(&cond);
    let get = |t: &str| cs.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(
        (get(DEGRADED).status.as_str(), get(DEGRADED).reason.as_str()),
        ("True", reason::MIGRATION_FAILED)
    );
    assert!(get(DEGRADED).message.contains("vault-migrate-1"));
    assert!(get(DEGRADED).message.contains("cache, index, batcher keep"));
    assert_eq!(get(PROGRESSING).status, "False");
}

#[test]
fn a_running_migration_or_a_held_role_is_progress() {
    let sv = sample();
    let running = Migration::Running { job: "m".into() };
    let roll = plan_roll(&desired(&sv), &all_stored(&sv, OLD), &running);
    let cond = condition(&sv, &running, &roll).unwrap();
    let cs = upgrade_conditions(&cond);
    assert_eq!(cs[1].status, "True");
    assert_eq!(cs[1].reason, reason::MIGRATION_RUNNING);
    assert_eq!(cs[2].status, "False", "not Degraded");

    let open = Migration::Succeeded { job: "m".into() };
    let roll = plan_roll(&desired(&sv), &all_stored(&sv, OLD), &open);
    let cond = condition(&sv, &open, &roll).unwrap();
    assert_eq!(cond.reason, reason::ROLLING_OUT);
    assert!(
        cond.message.contains("index waits for cache"),
        "{}",
        cond.message
    );
    let done = plan_roll(
        &desired(&sv),
        &all_stored(&sv, "skyvault:test"),
        &Migration::NotNeeded,
    );
    assert_eq!(condition(&sv, &Migration::NotNeeded, &done), None);
}
