//! Resending by hand from the contact's timeline (`POST /messages/{id}/resend`), through
//! `service::resends` as the API's `POST /api/v1/messages/{id}/resend` does.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::resends;
use crate::startup::AppState;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;

/// The button on a contact's timeline: back to the timeline with what happened.
pub async fn from_timeline(
    req: HttpRequest,
    auth: Auth<perm::ResendMessages>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let contact = match resends::resend(&state, auth.actor(), id.clone()).await {
        Ok(done) => {
            session.success("Queued again as a new message; the old one keeps its outcome.");
            done.contact
        }
        Err(ServiceError::Conflict { message, .. }) => {
            session.error(message);
            resends::contact_of(&state, id).await?
        }
        Err(e) => return Err(e.into()),
    };
    let back = if contact.is_empty() {
        "/contacts".to_owned()
    } else {
        format!("/contacts/{contact}")
    };
    Ok(redirect_response(&req, &back))
}
