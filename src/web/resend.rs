//! Resending by hand from the contact's timeline (`POST /messages/{id}/resend`), through
//! `service::resends` as the API's `POST /api/v1/messages/{id}/resend` does.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::resends;
use crate::startup::AppState;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;

/// Where to go back to after the resend: the contact's timeline, or (`?back=message`) the
/// message's own page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Back {
    back: Option<String>,
}

/// The button on a contact's timeline: back to the timeline with what happened.
pub async fn from_timeline(
    req: HttpRequest,
    auth: Auth<perm::ResendMessages>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    back: web::Query<Back>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    // Issue 18: from the message's own page, back to that page with what happened.
    if back.back.as_deref() == Some("message") {
        match resends::resend(&state, auth.actor(), id.clone(), None).await {
            Ok(done) => session.success(format!(
                "Queued again as message {}; this one keeps its outcome.",
                done.message.public_id
            )),
            Err(ServiceError::Conflict { message, .. }) => session.error(message),
            Err(e) => return Err(e.into()),
        }
        return Ok(redirect_response(&req, &format!("/messages/{id}")));
    }
    let contact = match resends::resend(&state, auth.actor(), id.clone(), None).await {
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
