//! The composer's audience with groups of conditions: a group inside the filter from the form,
//! problems reported at the row inside the group, and a filter nested deeper than the form's
//! rows (made through the API) edited as JSON and never flattened.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fixtures::{contact, setup, spawn};
use crate::helpers::{TestApp, location};
use crate::provider_kit::api;

async fn people(app: &TestApp, key: &str) {
    for (i, (city, tier)) in [
        ("Paris", "gold"),
        ("Paris", "silver"),
        ("Paris", "bronze"),
        ("Lyon", "gold"),
    ]
    .iter()
    .enumerate()
    {
        contact(
            app,
            key,
            json!({"phone": format!("+1415555070{i}"), "attributes": {"city": city, "tier": tier}}),
        )
        .await;
    }
}

async fn a_group_of_conditions_from_the_form(app: TestApp) {
    let s = setup(&app).await;
    people(&app, &s.key).await;
    let form = |tier_op: &'static str, tier_value: &'static str| {
        vec![
            ("name", "Paris members"),
            ("channel", s.sms.public_id.as_str()),
            ("text", "News for our members."),
            ("match", "all"),
            ("c0.field", "attributes.city"),
            ("c0.op", "eq"),
            ("c0.value", "Paris"),
            ("g0.match", "any"),
            ("g0.c0.field", "attributes.tier"),
            ("g0.c0.op", tier_op),
            ("g0.c0.value", tier_value),
            ("g0.c1.field", "attributes.tier"),
            ("g0.c1.op", "eq"),
            ("g0.c1.value", "silver"),
            ("next", "review"),
        ]
    };
    // A problem inside the group is shown at its row, with what was typed kept.
    let res = s.admin.post_form("/broadcasts", &form("gt", "lots")).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("&#34;lots&#34; is neither a number nor a date"),
        "{html}"
    );
    assert!(
        html.contains("name=\"g0.c1.value\" value=\"silver\""),
        "{html}"
    );

    // City is Paris, and (tier is gold or tier is silver): two of the four.
    let res = s.admin.post_form("/broadcasts", &form("eq", "gold")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = location(&res);
    let html = s.admin.get_html(&page).await;
    assert!(html.contains("data-reach>2<"), "the reach: {html}");
    assert!(
        html.contains("and (attributes.tier is gold or attributes.tier is silver)"),
        "{html}"
    );
    let edit = s.admin.get_html(&format!("{page}/edit")).await;
    assert!(
        edit.contains("name=\"g0.c1.value\" value=\"silver\""),
        "{edit}"
    );
    let id = page.trim_start_matches("/broadcasts/");
    let filter = stored_filter(&app, &s.key, id).await;
    assert_eq!(filter["conditions"][1]["match"], "any", "{filter}");
}

async fn a_deeper_filter_is_edited_as_json_and_kept(app: TestApp) {
    let s = setup(&app).await;
    people(&app, &s.key).await;
    // (city is Paris and (tier is gold or (tier is silver))), built through the API.
    let filter = json!({"match": "all", "conditions": [
        {"field": "attributes.city", "op": "eq", "value": "Paris"},
        {"match": "any", "conditions": [
            {"field": "attributes.tier", "op": "eq", "value": "gold"},
            {"match": "all", "conditions": [{"field": "attributes.tier", "op": "eq", "value": "silver"}]}
        ]}
    ]});
    let (status, b) = api(
        &app,
        Method::POST,
        "/api/v1/broadcasts",
        &s.key,
        Some(&json!({"name": "Deep", "channel": s.sms.name,
                     "audience": {"filter": filter}, "message": {"text": "Hello."}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().expect("id").to_owned();
    let edit = s.admin.get_html(&format!("/broadcasts/{id}/edit")).await;
    assert!(edit.contains("name=\"filter_json\""), "{edit}");
    // Saving the form as it came back changes nothing in the filter.
    let doc = scraper::Html::parse_document(&edit);
    let json_text: String = doc
        .select(&scraper::Selector::parse("textarea[name=filter_json]").unwrap())
        .next()
        .expect("the JSON box")
        .text()
        .collect();
    let save = |filter_json: String| {
        let admin = &s.admin;
        let channel = s.sms.public_id.clone();
        let path = format!("/broadcasts/{id}/edit");
        async move {
            admin
                .post_form(
                    &path,
                    &[
                        ("name", "Deep"),
                        ("channel", channel.as_str()),
                        ("text", "Hello."),
                        ("filter_json", filter_json.as_str()),
                        ("next", "review"),
                    ],
                )
                .await
                .status()
        }
    };
    assert_eq!(save(json_text).await, StatusCode::SEE_OTHER);
    assert_eq!(stored_filter(&app, &s.key, &id).await, filter);
    let html = s.admin.get_html(&format!("/broadcasts/{id}")).await;
    assert!(html.contains("data-reach>2<"), "{html}");
    // Broken JSON is refused at the filter, nothing saved.
    assert_eq!(
        save("{\"match\": ".into()).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(stored_filter(&app, &s.key, &id).await, filter);
}

/// The broadcast's filter as the API gives it.
async fn stored_filter(app: &TestApp, key: &str, id: &str) -> Value {
    crate::broadcasts::broadcast(app, key, id).await["audience"]["filter"].clone()
}

crate::both_backends!(
    spawn = spawn;
    a_group_of_conditions_from_the_form,
    a_deeper_filter_is_edited_as_json_and_kept,
);
