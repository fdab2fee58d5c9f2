//! Contacts › Lists: create, rename and delete lists, with their member counts.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::fields::FieldProblems;
use crate::error::AppError;
use crate::service::{self, ServiceError};
use crate::startup::AppState;
use crate::storage::lists::ListCount;
use crate::web::chrome::Chrome;
use crate::web::format::thousands;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::render_with_status;
use crate::web::session::TypedSession;

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
    errors: FieldProblems,
    can_edit: bool,
}

async fn page(
    state: &AppState,
    chrome: Chrome,
    name: String,
    errors: FieldProblems,
    can_edit: bool,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let lists = service::lists::all_with_counts(state)
        .await?
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
        FieldProblems::default(),
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

pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<NameForm>,
) -> Result<HttpResponse, AppError> {
    let raw = form.into_inner().name;
    match service::lists::create(&state, auth.actor(), &raw).await {
        Ok(list) => {
            session.success(format!(
                "List \"{}\" created. Add contacts from the contacts page or an import.",
                list.name
            ));
            Ok(redirect_response(&req, PATH))
        }
        Err(e) => match e.fields() {
            Some(errors) => {
                let errors = errors.clone();
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
            None => Err(e.into()),
        },
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
    match service::lists::rename(&state, auth.actor(), path.into_inner(), &form.name).await {
        Ok(name) => session.success(format!("Renamed to \"{name}\".")),
        Err(ServiceError::Conflict { message, .. }) => session.error(message),
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
    let list = service::lists::delete(&state, auth.actor(), path.into_inner()).await?;
    session.success(format!(
        "List \"{}\" deleted; its contacts are still there.",
        list.name
    ));
    Ok(redirect_response(&req, PATH))
}
