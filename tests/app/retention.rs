//! Issue 18: retention. An admin sets "purge message bodies and raw payloads after N days"
//! (validated); a run purges only what is older, in batches, keeps every status and count,
//! writes one audit entry saying how much it purged, and leaves the detail page and the resend
//! saying why the content is gone.

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use herald::service::retention;
use herald::storage::Db;
use herald::storage::schema::{inbound_messages, message_events, messages};
use reqwest::StatusCode;

use crate::fixtures::admin_and_key;
use crate::helpers::{TestApp, location};
use crate::provider_kit::*;

crate::both_backends!(
    the_setting_is_validated_and_audited,
    retention_purges_only_old_rows_in_batches_keeping_statuses_and_counts,
);

async fn the_setting_is_validated_and_audited(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    // Off by default.
    let page = admin.get_html("/settings/retention").await;
    assert!(page.contains("value=\"\""), "{page}");
    for bad in ["0.5", "3651", "-1", "ten"] {
        let res = admin
            .post_form("/settings/retention", &[("retention_days", bad)])
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let body = res.text().await.expect("body");
        assert!(
            body.contains("id=\"error-retention-days\""),
            "{bad}: {body}"
        );
    }
    let res = admin
        .post_form("/settings/retention", &[("retention_days", "30")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/settings/retention");
    let page = admin.get_html("/settings/retention").await;
    assert!(page.contains("value=\"30\""));
    let changed = audit(&app, &key, "retention.changed").await;
    assert_eq!(changed.len(), 1, "only the valid change is audited");
    assert_eq!(changed[0]["details"]["days"], 30);
    // Not for others.
    let marketer = app
        .user_with_role(&admin, "mo@example.com", "marketer")
        .await;
    let res = marketer.get("/settings/retention").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

fn days_ago(days: i64) -> chrono::NaiveDateTime {
    (Utc::now() - chrono::Duration::days(days)).naive_utc()
}

/// Messages per status, the figures every count is made of.
fn status_counts(app: &TestApp) -> Vec<(String, i64)> {
    messages::table
        .group_by(messages::status)
        .select((messages::status, diesel::dsl::count_star()))
        .order(messages::status)
        .load(&mut *app.db())
        .expect("counts")
}

async fn retention_purges_only_old_rows_in_batches_keeping_statuses_and_counts(app: TestApp) {
    let (admin, key) = admin_and_key(&app).await;
    let sms = crate::fixtures::channel_named(&app, "Sandbox SMS");
    let ada = contact_id(&app, &new_contact(&app, &key, "+16505551234").await);
    // Five messages from 40 days ago (one failed, so it could be resent) and two from today;
    // ids grow with time, as they do when Herald writes them.
    let mut old = Vec::new();
    for (i, status) in ["delivered", "read", "failed", "sent", "delivered"]
        .iter()
        .enumerate()
    {
        let pid = format!("SM-old-{i}");
        let (id, public_id) = insert_message(&app, sms.id, ada, "+16505551234", status, Some(&pid));
        old.push((id, public_id));
    }
    let mut new = Vec::new();
    for i in 0..2 {
        let pid = format!("SM-new-{i}");
        new.push(insert_message(
            &app,
            sms.id,
            ada,
            "+16505551234",
            "delivered",
            Some(&pid),
        ));
    }
    {
        let mut conn = app.db();
        for (id, _) in &old {
            diesel::update(messages::table.find(id))
                .set(messages::created_at.eq(days_ago(40)))
                .execute(&mut *conn)
                .expect("age");
        }
        for (id, _) in old.iter().chain(&new) {
            herald::storage::messages::record_event_with_payload(
                &mut conn,
                *id,
                herald::domain::message::MessageStatus::Delivered,
                "provider",
                "",
                Utc::now().naive_utc(),
                Some("{\"status\":\"delivered\"}"),
            )
            .expect("event");
        }
        for (i, at) in [days_ago(45), days_ago(41), days_ago(1)].iter().enumerate() {
            diesel::insert_into(inbound_messages::table)
                .values((
                    inbound_messages::public_id.eq(uuid::Uuid::now_v7().to_string()),
                    inbound_messages::channel_id.eq(sms.id),
                    inbound_messages::contact_id.eq(ada),
                    inbound_messages::provider_message_id.eq(format!("in-{i}")),
                    inbound_messages::body.eq(format!("reply {i}")),
                    inbound_messages::received_at.eq(at),
                    inbound_messages::created_at.eq(at),
                ))
                .execute(&mut *conn)
                .expect("inbound");
        }
    }
    let counts_before = status_counts(&app);

    // A run with batches of two: three transactions for the five old messages.
    let db = Db::connect(&app.database_url, 2).expect("pool");
    let run = retention::purge(&db, 30, Utc::now().naive_utc(), 2, Duration::ZERO)
        .await
        .expect("run");
    assert_eq!(
        (run.messages, run.inbound, run.payloads),
        (5, 2, 5),
        "{run:?}"
    );
    assert!(run.batches >= 3, "batches of two: {run:?}");

    for (id, _) in &old {
        let m = message(&app, *id);
        assert_eq!(m.body, "", "message {id} purged");
        assert_eq!(m.content, "{}");
        assert!(m.provider_message_id.is_some(), "metadata kept");
    }
    for (id, _) in &new {
        assert_eq!(message(&app, *id).body, "Hi Ada, order 1234 ships today.");
    }
    assert_eq!(
        status_counts(&app),
        counts_before,
        "statuses and counts unchanged"
    );
    let left: Vec<(i64, Option<String>)> = message_events::table
        .select((message_events::message_id, message_events::payload))
        .load(&mut *app.db())
        .expect("events");
    for (id, payload) in left {
        let is_old = old.iter().any(|(o, _)| *o == id);
        assert_eq!(payload.is_none(), is_old, "payload of message {id}");
    }
    let bodies: Vec<String> = inbound_messages::table
        .order(inbound_messages::id)
        .select(inbound_messages::body)
        .load(&mut *app.db())
        .expect("inbound");
    assert_eq!(bodies, ["", "", "reply 2"]);

    let entries = audit(&app, &key, "retention.purged").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["details"]["messages"], 5);
    assert_eq!(entries[0]["details"]["inbound_messages"], 2);
    assert_eq!(entries[0]["details"]["days"], 30);
    assert_eq!(entries[0]["details"]["interrupted"], false);

    // A second run finds nothing and writes nothing to the audit log.
    let again = retention::purge(&db, 30, Utc::now().naive_utc(), 2, Duration::ZERO)
        .await
        .expect("run");
    assert!(!again.purged_anything(), "{again:?}");
    assert_eq!(audit(&app, &key, "retention.purged").await.len(), 1);

    // A run a crash cut short after some batches left its tally (written in each batch's
    // transaction); the next run audits it before its own walk.
    herald::storage::settings::set(
        &mut app.db(),
        herald::storage::settings::RETENTION_RUN_TALLY,
        r#"{"days":30,"messages":7,"inbound":1,"payloads":3,"batches":2}"#,
    )
    .expect("tally");
    retention::purge(&db, 30, Utc::now().naive_utc(), 2, Duration::ZERO)
        .await
        .expect("run");
    let entries = audit(&app, &key, "retention.purged").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let crashed = entries
        .iter()
        .find(|e| e["details"]["interrupted"] == true)
        .expect("the interrupted run's entry");
    assert_eq!(crashed["details"]["messages"], 7);
    assert_eq!(crashed["details"]["payloads"], 3);

    // The page says why the content is gone; the resend says why it cannot.
    let failed = &old[2].1;
    let page = admin.get_html(&format!("/messages/{failed}")).await;
    let note = crate::helpers::texts(&page, "#purged-note").join(" ");
    assert!(
        note.contains("Content removed after 30 days (retention)"),
        "{page}"
    );
    assert!(!page.contains("Hi Ada, order 1234"));
    assert!(!page.contains("id=\"resend\""));
    let res = admin
        .post_form(&format!("/messages/{failed}/resend?back=message"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.get_html(&format!("/messages/{failed}")).await;
    assert!(
        page.contains("its content was removed after 30 days (retention)"),
        "{page}"
    );
    let resends: i64 = messages::table
        .filter(messages::resend_of.eq(old[2].0))
        .count()
        .get_result(&mut *app.db())
        .expect("count");
    assert_eq!(resends, 0);
}
