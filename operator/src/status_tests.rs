use super::*;
use crate::testutil::ts;
use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A StatefulSet at `generation` whose controller reported the given counts.
fn sts(generation: i64, observed: i64, replicas: i32, ready: i32, updated: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            generation: Some(generation),
            ..ObjectMeta::default()
        },
        status: Some(StatefulSetStatus {
            observed_generation: Some(observed),
            replicas,
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            current_revision: Some("r1".into()),
            update_revision: Some("r1".into()),
            ..StatefulSetStatus::default()
        }),
        ..StatefulSet::default()
    }
}

fn healthy(role: Role, n: i32) -> RoleState {
    role_state(role, n, Some(&sts(1, 1, n, n, n)))
}

fn input<'a>(
    roles: &'a [RoleState],
    problem: Option<&'a Problem>,
    previous: &'a [Condition],
) -> ConditionInput<'a> {
    ConditionInput {
        generation: Some(7),
        problem,
        roles,
        last_compaction: None,
        last_purge: None,
        upgrade: None,
        previous,
        now: ts("2030-01-01T00:00:00Z"),
    }
}

fn find<'a>(cs: &'a [Condition], t: &str) -> &'a Condition {
    cs.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn role_state_from_statefulset_status() {
    let s = role_state(Role::Cache, 3, Some(&sts(2, 2, 3, 2, 3)));
    assert_eq!((s.ready, s.updated, s.rolled_out), (2, 3, false));
    assert_eq!(role_status(&s).summary, "2/3");
    assert!(role_state(Role::Cache, 3, Some(&sts(2, 2, 3, 3, 3))).rolled_out);
}

#[test]
fn missing_statefulset_or_status_is_not_ready() {
    let s = role_state(Role::Index, 2, None);
    assert_eq!((s.ready, s.rolled_out), (0, false));
    let created = StatefulSet {
        metadata: ObjectMeta {
            generation: Some(1),
            ..ObjectMeta::default()
        },
        ..StatefulSet::default()
    };
    assert!(!role_state(Role::Index, 2, Some(&created)).rolled_out);
}

#[test]
fn unobserved_generation_or_revision_change_is_still_rolling() {
    let old = role_state(Role::Batcher, 1, Some(&sts(3, 2, 1, 1, 1)));
    assert!(!old.rolled_out, "old generation");
    assert_eq!(
        old.waiting_for,
        "the StatefulSet controller to observe the new spec"
    );
    let mut rolling = sts(3, 3, 1, 1, 1);
    rolling.status.as_mut().unwrap().update_revision = Some("r2".into());
    let r = role_state(Role::Batcher, 1, Some(&rolling));
    assert_eq!(
        (r.rolled_out, r.waiting_for.as_str()),
        (false, "revision r1 to become r2")
    );
    // Scale-down not finished: 3 Pods still exist for 2 desired.
    let scaling = role_state(Role::Batcher, 2, Some(&sts(3, 3, 3, 3, 3)));
    assert_eq!(
        (scaling.rolled_out, scaling.waiting_for.as_str()),
        (false, "3 Pods to become 2")
    );
    let updating = role_state(Role::Batcher, 3, Some(&sts(3, 3, 3, 3, 1)));
    assert_eq!(updating.waiting_for, "1/3 Pods updated");
    assert_eq!(
        role_state(Role::Batcher, 3, Some(&sts(3, 3, 3, 3, 3))).waiting_for,
        ""
    );
}

#[test]
fn all_ready_and_rolled_out() {
    let roles = [
        healthy(Role::Batcher, 1),
        healthy(Role::Index, 2),
        healthy(Role::Cache, 3),
    ];
    let cs = conditions(&input(&roles, None, &[]));
    let types: Vec<_> = cs.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, vec!["Ready", "Progressing", "Degraded"]);
    let ready = find(&cs, READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", reason::ALL_REPLICAS_READY)
    );
    assert_eq!(ready.observed_generation, Some(7));
    assert!(
        ready.message.contains("cache 3/3 ready"),
        "{}",
        ready.message
    );
    assert_eq!(find(&cs, PROGRESSING).status, "False");
    assert_eq!(find(&cs, DEGRADED).reason, reason::AS_EXPECTED);
}

#[test]
fn replicas_coming_up_are_progressing_and_not_ready() {
    let roles = [
        healthy(Role::Batcher, 1),
        role_state(Role::Index, 2, Some(&sts(1, 1, 2, 1, 2))),
        role_state(Role::Cache, 1, None),
    ];
    let cs = conditions(&input(&roles, None, &[]));
    let ready = find(&cs, READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::REPLICAS_NOT_READY)
    );
    assert_eq!(
        ready.message,
        "index 1/2 ready, 2 updated; cache 0/1 ready, 0 updated"
    );
    let prog = find(&cs, PROGRESSING);
    assert_eq!(
        (prog.status.as_str(), prog.reason.as_str()),
        ("True", reason::ROLLING_OUT)
    );
    assert_eq!(
        prog.message,
        "index: waiting for 1/2 Pods ready; cache: waiting for no status from the StatefulSet controller yet"
    );
    assert_eq!(find(&cs, DEGRADED).status, "False");
}

#[test]
fn problem_makes_degraded_and_not_ready() {
    let roles = [healthy(Role::Batcher, 1)];
    let problem = Problem {
        reason: reason::SECRET_NOT_FOUND,
        message: "spec.database.urlSecret: Secret pg not found".into(),
    };
    let cs = conditions(&input(&roles, Some(&problem), &[]));
    let degraded = find(&cs, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reason::SECRET_NOT_FOUND)
    );
    assert!(degraded.message.contains("spec.database.urlSecret"));
    assert_eq!(find(&cs, READY).status, "False");
    assert_eq!(find(&cs, READY).reason, reason::SECRET_NOT_FOUND);
    assert_eq!(find(&cs, PROGRESSING).status, "False");
}

#[test]
fn failed_maintenance_job_degrades_but_keeps_ready() {
    let roles = [healthy(Role::Batcher, 1)];
    let failed = JobRun {
        job_name: "vault-purge-1".into(),
        scheduled_time: None,
        start_time: None,
        completion_time: None,
        result: JobResult::Failed,
        message: Some("BackoffLimitExceeded".into()),
        manual: false,
        debt: false,
    };
    let mut i = input(&roles, None, &[]);
    i.last_purge = Some(&failed);
    let cs = conditions(&i);
    let degraded = find(&cs, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reason::PURGE_FAILED)
    );
    assert_eq!(
        degraded.message,
        "Job vault-purge-1 failed: BackoffLimitExceeded"
    );
    assert_eq!(find(&cs, READY).status, "True");
}

#[test]
fn a_running_retry_keeps_the_failure_until_a_run_succeeds() {
    let roles = [healthy(Role::Batcher, 1)];
    let run = |result| JobRun {
        job_name: "vault-compact-2".into(),
        scheduled_time: None,
        start_time: None,
        completion_time: None,
        result,
        message: None,
        manual: true,
        debt: false,
    };
    let (running, succeeded) = (run(JobResult::Running), run(JobResult::Succeeded));
    let mut i = input(&roles, None, &[]);
    i.last_compaction = Some(&running);
    assert_eq!(
        find(&conditions(&i), DEGRADED).status,
        "False",
        "nothing failed before"
    );

    let failed = run(JobResult::Failed);
    let mut f = input(&roles, None, &[]);
    f.last_compaction = Some(&failed);
    let failed_before = conditions(&f);
    let mut i = input(&roles, None, &failed_before);
    i.last_compaction = Some(&running);
    let degraded = find(&conditions(&i), DEGRADED).clone();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reason::COMPACTION_FAILED)
    );
    for idle in [JobResult::NothingToDo, JobResult::InputsClaimed] {
        let idle = run(idle);
        let mut i = input(&roles, None, &failed_before);
        i.last_compaction = Some(&idle);
        assert_eq!(
            find(&conditions(&i), DEGRADED).status,
            "True",
            "{:?} fixes nothing",
            idle.result
        );
    }
    let mut i = input(&roles, None, &failed_before);
    i.last_compaction = Some(&succeeded);
    assert_eq!(
        find(&conditions(&i), DEGRADED).status,
        "False",
        "a success clears it"
    );
}

#[test]
fn transition_time_moves_only_when_status_flips() {
    let roles = [healthy(Role::Batcher, 1)];
    let earlier = conditions(&ConditionInput {
        now: ts("2029-01-01T00:00:00Z"),
        ..input(&roles, None, &[])
    });
    let later = conditions(&input(&roles, None, &earlier));
    assert_eq!(
        find(&later, READY).last_transition_time,
        Time(ts("2029-01-01T00:00:00Z"))
    );
    let down = [role_state(Role::Batcher, 1, None)];
    let flipped = conditions(&input(&down, None, &earlier));
    assert_eq!(
        find(&flipped, READY).last_transition_time,
        Time(ts("2030-01-01T00:00:00Z"))
    );
}
