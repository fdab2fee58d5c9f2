//! Contacts › Lists: create, rename and delete lists, with their member counts.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::user::DisplayName;
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::lists::{self, ListCount};
use crate::storage::{audit, is_unique_violation};
use crate::web::chrome::Chrome;
use crate::web::contacts::{list_or_404, thousands};
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{FieldErrors, render_with_status};

pub const PATH: &str = "/contacts/lists";

pub struct ListView {
    pub item: ListCount,
    pub members: String,
}

#[derive(Template)]
#[template(path = "contacts/lists.html")]
struct ListsPage {
    chrome: Chrome,
    lists: Vec<ListView>,
    name: String,
    errors: FieldErrors,
    can_edit: bool,
}

async fn page(
    state: &AppState,
    chrome: Chrome,
    name: String,
    errors: FieldErrors,
    can_edit: bool,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let all = state
        .db
        .run(|conn| Ok::<_, AppError>(lists::all_with_counts(conn)?))
        .await?;
    let lists = all
        .into_iter()
        .map(|item| ListView {
            members: thousands(item.members),
            item,
        })
        .collect();
    render_with_status(
        &ListsPage {
            chrome,
            lists,
            name,
            errors,
            can_edit,
        },
        status,
    )
}

pub async fn index(
    auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let can_edit = auth
        .principal
        .role()
        .can(crate::domain::role::Permission::ManageContacts);
    page(
        &state,
        chrome,
        String::new(),
        FieldErrors::default(),
        can_edit,
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize)]
pub struct NameForm {
    #[serde(default)]
    name: String,
}

fn list_name(raw: &str) -> Result<String, String> {
    DisplayName::parse(raw)
        .map(DisplayName::into_inner)
        .map_err(|e| e.replace("a name", "a list name"))
}

pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<NameForm>,
) -> Result<HttpResponse, AppError> {
    let raw = form.into_inner().name;
    let mut errors = FieldErrors::default();
    let Some(name) = errors.check("name", list_name(&raw)) else {
        return page(
            &state,
            chrome,
            raw,
            errors,
            true,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let actor = auth.actor();
    let n = name.clone();
    let created = state
        .db
        .run(move |conn| {
            Ok::<_, AppError>(crate::storage::write_transaction(conn, |conn| {
                let l = lists::create(conn, &n)?;
                audit::record(
                    conn,
                    &actor,
                    "list.created",
                    "list",
                    Some(&l.public_id),
                    serde_json::json!({"name": l.name}),
                )?;
                Ok::<_, diesel::result::Error>(l)
            }))
        })
        .await?;
    match created {
        Ok(_) => {
            session.success(format!(
                "List \"{name}\" created. Add contacts from the contacts page or an import."
            ));
            Ok(redirect_response(&req, PATH))
        }
        Err(e) if is_unique_violation(&e) => {
            errors.add(
                "name",
                format!("There is already a list called \"{name}\"."),
            );
            page(
                &state,
                chrome,
                raw,
                errors,
                true,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn rename(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<NameForm>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let name = list_name(&form.name).map_err(|e| AppError::invalid("invalid_name", e))?;
    let actor = auth.actor();
    let n = name.clone();
    let result = state
        .db
        .run(move |conn| {
            let l = list_or_404(conn, &public_id)?;
            let renamed = crate::storage::write_transaction(conn, |conn| {
                lists::rename(conn, l.id, &n)?;
                audit::record(
                    conn,
                    &actor,
                    "list.renamed",
                    "list",
                    Some(&l.public_id),
                    serde_json::json!({"from": l.name, "to": n}),
                )?;
                Ok::<_, diesel::result::Error>(())
            });
            Ok::<_, AppError>(renamed)
        })
        .await?;
    match result {
        Ok(()) => session.success(format!("Renamed to \"{name}\".")),
        Err(e) if is_unique_violation(&e) => {
            session.error(format!("There is already a list called \"{name}\"."))
        }
        Err(e) => return Err(e.into()),
    }
    Ok(redirect_response(&req, PATH))
}

pub async fn delete(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let actor = auth.actor();
    let list = state
        .db
        .run(move |conn| {
            crate::storage::write_transaction(conn, |conn| {
                let l = list_or_404(conn, &public_id)?;
                lists::delete(conn, l.id)?;
                audit::record(
                    conn,
                    &actor,
                    "list.deleted",
                    "list",
                    Some(&l.public_id),
                    serde_json::json!({"name": l.name}),
                )?;
                Ok::<_, AppError>(l)
            })
        })
        .await?;
    session.success(format!(
        "List \"{}\" deleted; its contacts are still there.",
        list.name
    ));
    Ok(redirect_response(&req, PATH))
}
