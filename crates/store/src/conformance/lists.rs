//! Cases for paging and filtering lists, and for tenant isolation of every getter.

use std::collections::HashSet;

use spillway_core::ErrorKind;
use spillway_core::api::Page;
use spillway_core::names::LabelSelector;
use spillway_core::state::{JobState, TaskState};

use super::ops::{complete_ok, fail_ok};
use super::{
    OTHER, QUEUE, TENANT, after, job, lease, lease_as, must, must_fail, setup, setup_queue, submit,
    t0, test_settings,
};
use crate::{DeadList, DeadRequeue, DynStore, JobList, TaskList};
use crate::{JobCancel, JobRetry, QueueStatsQuery};

/// Follow cursors to the end, checking every page is full but the last.
async fn drain<T, F, Fut>(limit: usize, mut page: F) -> Vec<T>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = spillway_core::Result<Page<T>>>,
{
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let p = must("list page", page(cursor.clone()).await);
        assert!(p.items.len() <= limit, "a page is larger than its limit");
        let n = p.items.len();
        all.extend(p.items);
        match p.next_cursor {
            Some(c) => {
                assert!(n > 0, "an empty page must not carry a cursor");
                cursor = Some(c);
            }
            None => return all,
        }
    }
    panic!("pagination never ended")
}

/// Jobs page newest first without duplicates or gaps, filtered by queue, state and label.
pub async fn job_list_pages_and_filters(store: DynStore) {
    setup(&store).await;
    setup_queue(&store, TENANT, "side", test_settings()).await;
    setup_queue(&store, OTHER, QUEUE, test_settings()).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let mut p = job(TENANT, QUEUE, 1, after(t0(), i));
        if i % 5 == 0 {
            p.labels.insert("color".into(), "red".into());
        }
        ids.push(submit(&store, p).await.id);
    }
    let side = submit(&store, job(TENANT, "side", 1, t0())).await;
    submit(&store, job(OTHER, QUEUE, 1, t0())).await;

    let list = |queue: Option<&str>, state, label: Option<(&str, &str)>, limit, cursor| JobList {
        tenant: Some(TENANT.into()),
        queue: queue.map(str::to_string),
        state,
        labels: label
            .map(|(k, v): (&str, &str)| LabelSelector {
                key: k.to_string(),
                value: Some(v.to_string()),
            })
            .into_iter()
            .collect(),
        limit,
        cursor,
    };
    let got = drain(10, |c| store.job_list(list(Some(QUEUE), None, None, 10, c))).await;
    let got_ids: Vec<_> = got.iter().map(|j| j.id.clone()).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(
        got_ids, newest_first,
        "jobs page newest first with no gap or duplicate"
    );

    let all = drain(7, |c| store.job_list(list(None, None, None, 7, c))).await;
    assert_eq!(
        all.len(),
        26,
        "the tenant filter keeps the other tenant's job out"
    );
    assert!(all.iter().any(|j| j.id == side.id));

    let red = drain(2, |c| {
        store.job_list(list(None, None, Some(("color", "red")), 2, c))
    })
    .await;
    assert_eq!(red.len(), 5);
    assert!(
        red.iter()
            .all(|j| j.labels.get("color").map(String::as_str) == Some("red"))
    );

    // Finish the oldest job, then filter by state.
    let t = lease(&store, QUEUE, 1, after(t0(), 100)).await.remove(0);
    assert_eq!(t.job_id, ids[0]);
    complete_ok(&store, &t, after(t0(), 100)).await;
    let done = drain(3, |c| {
        store.job_list(list(None, Some(JobState::Succeeded), None, 3, c))
    })
    .await;
    assert_eq!(
        done.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![ids[0].clone()]
    );
    let queued = drain(4, |c| {
        store.job_list(list(None, Some(JobState::Queued), None, 4, c))
    })
    .await;
    assert_eq!(queued.len(), 25);

    let everyone = drain(100, |c| {
        store.job_list(JobList {
            limit: 100,
            cursor: c,
            ..Default::default()
        })
    })
    .await;
    assert_eq!(everyone.len(), 27, "no tenant filter lists every tenant");
}

/// Several label conditions are ANDed by the store (`key=value`, and a bare key for any
/// value), so pages stay full; conditions no job can meet list nothing.
pub async fn job_list_filters_by_several_labels(store: DynStore) {
    setup(&store).await;
    // 12 jobs: team a or b by parity, run 1 to 3 in turn, every fourth with `urgent`.
    let mut jobs = Vec::new();
    for i in 0..12u32 {
        let mut p = job(TENANT, QUEUE, 1, after(t0(), i64::from(i)));
        p.labels
            .insert("team".into(), if i % 2 == 0 { "a" } else { "b" }.into());
        p.labels.insert("run".into(), (i % 3 + 1).to_string());
        if i % 4 == 0 {
            p.labels.insert("urgent".into(), "yes".into());
        }
        jobs.push((i, submit(&store, p).await.id));
    }
    let select = |conditions: &[&str]| -> Vec<LabelSelector> {
        conditions
            .iter()
            .map(|c| must("parse a selector", LabelSelector::parse(c)))
            .collect()
    };
    let ids = |want: &dyn Fn(u32) -> bool| -> Vec<String> {
        let mut ids: Vec<String> = jobs
            .iter()
            .filter(|(i, _)| want(*i))
            .map(|(_, id)| id.clone())
            .collect();
        ids.reverse();
        ids
    };
    let listed = |labels: Vec<LabelSelector>| {
        let store = store.clone();
        async move {
            drain(2, |c| {
                store.job_list(JobList {
                    tenant: Some(TENANT.into()),
                    labels: labels.clone(),
                    limit: 2,
                    cursor: c,
                    ..Default::default()
                })
            })
            .await
            .into_iter()
            .map(|j| j.id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(select(&["team=a", "run=1"])).await,
        ids(&|i| i % 2 == 0 && i % 3 == 0),
        "team=a AND run=1"
    );
    assert_eq!(
        listed(select(&["team=a", "urgent"])).await,
        ids(&|i| i % 4 == 0),
        "a bare key matches any value"
    );
    assert_eq!(
        listed(select(&["team=b", "run=2", "urgent"])).await,
        ids(&|i| i % 2 == 1 && i % 3 == 1 && i % 4 == 0),
        "three conditions"
    );
    assert!(
        listed(select(&["team=a", "team=b"])).await.is_empty(),
        "one key cannot have two values"
    );
    assert!(
        listed(select(&["nosuch"])).await.is_empty(),
        "a missing key matches nothing"
    );
    // A full page with more to come: the store filters, not the caller after paging.
    let page = must(
        "list a page",
        store
            .job_list(JobList {
                tenant: Some(TENANT.into()),
                labels: select(&["team=a"]),
                limit: 3,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(page.items.len(), 3);
    assert!(page.next_cursor.is_some());
}

/// Tasks page in id order, filtered by job, queue and state; dead letters page too.
pub async fn task_and_dead_lists_page(store: DynStore) {
    setup(&store).await;
    let j = submit(&store, job(TENANT, QUEUE, 25, t0())).await;
    let other_job = submit(&store, job(TENANT, QUEUE, 3, t0())).await;
    let list = |job_id: Option<&str>, state, limit, cursor| TaskList {
        tenant: Some(TENANT.into()),
        job_id: job_id.map(str::to_string),
        queue: None,
        state,
        limit,
        cursor,
    };
    let tasks = drain(7, |c| store.task_list(list(Some(&j.id), None, 7, c))).await;
    let indexes: Vec<u32> = tasks.iter().map(|t| t.index).collect();
    assert_eq!(indexes, (0..25).collect::<Vec<_>>());
    assert!(
        tasks.windows(2).all(|w| w[0].id < w[1].id),
        "tasks page in id order"
    );
    let all = drain(10, |c| store.task_list(list(None, None, 10, c))).await;
    assert_eq!(all.len(), 28);
    assert_eq!(all.iter().filter(|t| t.job_id == other_job.id).count(), 3);

    let leased = lease(&store, QUEUE, 12, t0()).await;
    for t in &leased {
        fail_ok(&store, t, false, t0()).await;
    }
    let dead = drain(5, |c| {
        store.task_list(list(Some(&j.id), Some(TaskState::Dead), 5, c))
    })
    .await;
    assert_eq!(dead.len(), 12);
    let by_queue = drain(100, |c| {
        store.task_list(TaskList {
            tenant: Some(TENANT.into()),
            queue: Some(QUEUE.into()),
            state: Some(TaskState::Available),
            limit: 100,
            cursor: c,
            ..Default::default()
        })
    })
    .await;
    assert_eq!(by_queue.len(), 16);

    let dl = drain(5, |c| {
        store.dead_list(DeadList {
            tenant: Some(TENANT.into()),
            queue: Some(QUEUE.into()),
            limit: 5,
            cursor: c,
            ..Default::default()
        })
    })
    .await;
    let ids: Vec<_> = dl.iter().map(|t| t.id).collect();
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(
        (ids.len(), unique.len()),
        (12, 12),
        "dead letters page without duplicates"
    );
    let expected: HashSet<_> = leased.iter().map(|t| t.task_id).collect();
    assert_eq!(ids.iter().copied().collect::<HashSet<_>>(), expected);
}

/// Every getter and changer keeps tenants apart.
pub async fn tenants_are_isolated(store: DynStore) {
    setup(&store).await;
    setup_queue(&store, OTHER, QUEUE, test_settings()).await;
    let mine = submit(&store, job(TENANT, QUEUE, 2, t0())).await;
    let theirs = submit(&store, job(OTHER, QUEUE, 1, t0())).await;
    let t = lease(&store, QUEUE, 1, t0()).await.remove(0);
    fail_ok(&store, &t, false, t0()).await;
    let their_task = lease_as(&store, OTHER, QUEUE, "p", 1, t0()).await.remove(0);
    assert_eq!(their_task.job_id, theirs.id);

    let nf = ErrorKind::NotFound;
    must_fail("job_get", nf, store.job_get(Some(OTHER), &mine.id).await);
    must_fail("task_get", nf, store.task_get(Some(OTHER), t.task_id).await);
    must_fail(
        "task_attempts",
        nf,
        store.task_attempts(Some(OTHER), t.task_id).await,
    );
    must_fail(
        "job_cancel",
        nf,
        store
            .job_cancel(JobCancel {
                tenant: Some(OTHER.into()),
                id: mine.id.clone(),
                now: t0(),
            })
            .await,
    );
    must_fail(
        "job_retry",
        nf,
        store
            .job_retry(JobRetry {
                tenant: Some(OTHER.into()),
                id: mine.id.clone(),
                now: t0(),
            })
            .await,
    );
    must("job_get own", store.job_get(Some(TENANT), &mine.id).await);
    must("job_get admin", store.job_get(None, &mine.id).await);
    must(
        "task_get admin",
        store.task_get(None, their_task.task_id).await,
    );

    let their_tasks = must(
        "task_list",
        store
            .task_list(TaskList {
                tenant: Some(OTHER.into()),
                job_id: Some(mine.id.clone()),
                limit: 100,
                ..Default::default()
            })
            .await,
    );
    assert!(
        their_tasks.items.is_empty(),
        "another tenant listed my job's tasks"
    );
    let jobs = must(
        "job_list",
        store
            .job_list(JobList {
                tenant: Some(OTHER.into()),
                limit: 100,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        jobs.items.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![theirs.id]
    );
    let dead = must(
        "dead_list",
        store
            .dead_list(DeadList {
                tenant: Some(OTHER.into()),
                limit: 100,
                ..Default::default()
            })
            .await,
    );
    assert!(
        dead.items.is_empty(),
        "another tenant listed my dead letters"
    );
    let requeued = must(
        "dead_requeue",
        store
            .dead_requeue(DeadRequeue {
                tenant: Some(OTHER.into()),
                task_ids: vec![t.task_id],
                queue: None,
                now: t0(),
            })
            .await,
    );
    assert_eq!(requeued, 0, "another tenant requeued my dead letter");
    assert_eq!(
        must("task_get", store.task_get(None, t.task_id).await).state,
        TaskState::Dead
    );
    let stats = must(
        "queue_stats",
        store
            .queue_stats(QueueStatsQuery {
                tenant: Some(OTHER.into()),
                now: t0(),
            })
            .await,
    );
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].counts.total(), 1);
}
