//! Cases for token expiry and queue scope as stored, and dashboard sessions.

use spillway_core::ErrorKind;
use spillway_core::Timestamp;
use spillway_core::auth::Role;

use super::admin::token;
use super::{OTHER, TENANT, after, must, must_fail, t0};
use crate::{
    DynStore, SessionCreate, SessionSweep, SessionTouch, TenantCreate, TokenCreate, TokenRevoke,
};

async fn tenants(store: &DynStore) {
    for name in [TENANT, OTHER] {
        must(
            "tenant_create",
            store
                .tenant_create(TenantCreate {
                    name: name.to_string(),
                    now: t0(),
                })
                .await,
        );
    }
}

/// A token's expiry and queue scope come back as stored from create, lookup and list; a
/// token without them has neither. Expiry is the caller's to judge: lookup still finds an
/// expired token (so the server can say when it expired).
pub async fn tokens_keep_expiry_and_queue_scope(store: DynStore) {
    tenants(&store).await;
    let expires = after(t0(), 3600);
    let scoped = TokenCreate {
        role: Role::Worker,
        expires_at: Some(expires),
        queues: Some(vec!["orders".into(), "images".into()]),
        ..token("tk-scoped", Some(TENANT), "h-scoped")
    };
    let created = must("token_create scoped", store.token_create(scoped).await);
    assert_eq!(created.expires_at, Some(expires));
    assert_eq!(
        created.queues,
        Some(vec!["orders".to_string(), "images".to_string()])
    );
    let plain = must(
        "token_create plain",
        store
            .token_create(token("tk-plain", Some(TENANT), "h-plain"))
            .await,
    );
    assert_eq!((plain.expires_at, plain.queues), (None, None));

    let found = must("token_lookup", store.token_lookup("h-scoped").await)
        .expect("the scoped token is found");
    assert_eq!(found, created, "lookup answers the token as created");
    let listed = must("token_list", store.token_list(Some(TENANT)).await);
    let listed_scoped = listed.iter().find(|t| t.id == "tk-scoped").expect("listed");
    assert_eq!(listed_scoped, &created, "list answers the token as created");
    let listed_plain = listed.iter().find(|t| t.id == "tk-plain").expect("listed");
    assert_eq!(
        (listed_plain.expires_at, &listed_plain.queues),
        (None, &None)
    );
}

fn session(id_hash: &str, token_id: &str, now: Timestamp) -> SessionCreate {
    SessionCreate {
        id_hash: id_hash.into(),
        token_id: token_id.into(),
        csrf: format!("csrf-{id_hash}"),
        now,
        expires_at: after(now, 100),
    }
}

/// A session is found with its token until it ends: idle past its expiry (a touch moves the
/// expiry on, and cannot revive an ended one), signed out, its token revoked, or its token
/// expired. Ids are unique.
pub async fn sessions_live_while_used_and_their_token_lives(store: DynStore) {
    tenants(&store).await;
    let expiring = TokenCreate {
        expires_at: Some(after(t0(), 1000)),
        queues: Some(vec!["orders".into()]),
        ..token("tk-exp", Some(TENANT), "h-exp")
    };
    let expiring = must("token_create", store.token_create(expiring).await);
    must(
        "token_create",
        store.token_create(token("tk-a", Some(TENANT), "h-a")).await,
    );
    must(
        "token_create",
        store.token_create(token("tk-b", Some(OTHER), "h-b")).await,
    );

    must(
        "session_create",
        store.session_create(session("s-a", "tk-a", t0())).await,
    );
    must_fail(
        "session_create same id",
        ErrorKind::Conflict,
        store.session_create(session("s-a", "tk-b", t0())).await,
    );
    let found = must(
        "session_get",
        store.session_get("s-a", after(t0(), 1)).await,
    )
    .expect("a new session is live");
    assert_eq!(found.id_hash, "s-a");
    assert_eq!(found.token.id, "tk-a");
    assert_eq!(found.token.tenant.as_deref(), Some(TENANT));
    assert_eq!(found.csrf, "csrf-s-a");
    assert_eq!(found.created_at, t0());
    assert_eq!(found.last_used_at, t0());
    assert_eq!(found.expires_at, after(t0(), 100));
    assert!(
        must("session_get unknown", store.session_get("nope", t0()).await).is_none(),
        "an unknown session is not found"
    );

    // Used at 90 s: it now ends at 190 s instead of 100 s.
    let touched = store
        .session_touch(SessionTouch {
            id_hash: "s-a".into(),
            now: after(t0(), 90),
            expires_at: after(t0(), 190),
        })
        .await;
    assert!(must("session_touch", touched), "a live session is touched");
    let found = must(
        "session_get",
        store.session_get("s-a", after(t0(), 150)).await,
    )
    .expect("a used session lives past its first expiry");
    assert_eq!(found.last_used_at, after(t0(), 90));
    assert_eq!(found.expires_at, after(t0(), 190));
    assert!(
        must(
            "session_get idle",
            store.session_get("s-a", after(t0(), 190)).await
        )
        .is_none(),
        "a session idle past its expiry has ended"
    );
    let revived = store
        .session_touch(SessionTouch {
            id_hash: "s-a".into(),
            now: after(t0(), 200),
            expires_at: after(t0(), 300),
        })
        .await;
    assert!(
        !must("session_touch ended", revived),
        "an ended session is not revived"
    );
    assert!(
        must(
            "session_get",
            store.session_get("s-a", after(t0(), 250)).await
        )
        .is_none(),
        "an ended session stays ended"
    );

    // Signing out ends it; ending it twice is fine.
    must(
        "session_create",
        store.session_create(session("s-out", "tk-a", t0())).await,
    );
    must("session_delete", store.session_delete("s-out").await);
    must("session_delete again", store.session_delete("s-out").await);
    assert!(must("session_get", store.session_get("s-out", t0()).await).is_none());

    // Its token's revocation ends it.
    must(
        "session_create",
        store.session_create(session("s-b", "tk-b", t0())).await,
    );
    assert!(must("session_get", store.session_get("s-b", t0()).await).is_some());
    must(
        "token_revoke",
        store
            .token_revoke(TokenRevoke {
                tenant: None,
                id: "tk-b".into(),
                now: after(t0(), 1),
            })
            .await,
    );
    assert!(
        must(
            "session_get revoked",
            store.session_get("s-b", after(t0(), 2)).await
        )
        .is_none(),
        "a revoked token's session has ended"
    );

    // Its token's expiry ends it, even though the session itself would live on.
    let long = SessionCreate {
        expires_at: after(t0(), 5000),
        ..session("s-exp", "tk-exp", t0())
    };
    must("session_create", store.session_create(long).await);
    let found = must(
        "session_get",
        store.session_get("s-exp", after(t0(), 999)).await,
    )
    .expect("live before its token expires");
    assert_eq!(
        found.token, expiring,
        "the session carries its token as stored"
    );
    assert!(
        must(
            "session_get expired token",
            store.session_get("s-exp", after(t0(), 1000)).await
        )
        .is_none(),
        "an expired token's session has ended"
    );
}

/// The sweep deletes sessions that ended (idle, token revoked or expired, token unknown), at
/// most `limit` per call, and leaves live ones.
pub async fn sessions_are_swept_in_bounded_passes(store: DynStore) {
    tenants(&store).await;
    let expiring = TokenCreate {
        expires_at: Some(after(t0(), 50)),
        ..token("tk-exp", Some(TENANT), "h-exp")
    };
    must("token_create", store.token_create(expiring).await);
    must(
        "token_create",
        store.token_create(token("tk-a", Some(TENANT), "h-a")).await,
    );
    must(
        "token_create",
        store.token_create(token("tk-r", Some(TENANT), "h-r")).await,
    );
    // Ended by 60 s: three idle, one of an expired token, one of a revoked token, one of a
    // token that never existed. Live: one.
    for id in ["idle-1", "idle-2", "idle-3"] {
        let idle = SessionCreate {
            expires_at: after(t0(), 30),
            ..session(id, "tk-a", t0())
        };
        must("session_create", store.session_create(idle).await);
    }
    must(
        "session_create",
        store
            .session_create(session("of-expired", "tk-exp", t0()))
            .await,
    );
    must(
        "session_create",
        store
            .session_create(session("of-revoked", "tk-r", t0()))
            .await,
    );
    must(
        "session_create",
        store
            .session_create(session("of-unknown", "tk-gone", t0()))
            .await,
    );
    must(
        "session_create",
        store.session_create(session("live", "tk-a", t0())).await,
    );
    must(
        "token_revoke",
        store
            .token_revoke(TokenRevoke {
                tenant: None,
                id: "tk-r".into(),
                now: after(t0(), 1),
            })
            .await,
    );
    let sweep = |limit| SessionSweep {
        now: after(t0(), 60),
        limit,
    };
    assert_eq!(
        must("session_sweep", store.session_sweep(sweep(4)).await),
        4
    );
    assert_eq!(
        must("session_sweep", store.session_sweep(sweep(4)).await),
        2
    );
    assert_eq!(
        must("session_sweep", store.session_sweep(sweep(4)).await),
        0
    );
    assert!(
        must(
            "session_get",
            store.session_get("live", after(t0(), 60)).await
        )
        .is_some(),
        "a live session is not swept"
    );
}
