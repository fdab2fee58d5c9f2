//! Issue 20: Automations (admins), two tabs: [`triggers`] and [`reminders`]. What their pages
//! share is here: the choice of an approved template, how a refused save shows beside the
//! form's fields, and the enable / disable and delete buttons of an automation's page
//! ([`Switchable`], [`set_enabled`], [`delete`]).

pub mod reminders;
pub mod triggers;

use std::future::Future;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::domain::audit::Actor;
use crate::domain::fields::FieldProblems;
use crate::error::AppError;
use crate::service::{ServiceError, ServiceResult};
use crate::startup::AppState;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;

/// The template select's value, `name|language`, as (name, language); `None` when no template
/// was chosen (the text is sent).
pub fn template_choice(raw: &str) -> Option<(String, String)> {
    raw.split_once('|')
        .map(|(name, language)| (name.to_owned(), language.to_owned()))
}

/// The select's value for a template.
pub fn template_value(name: &str, language: &str) -> String {
    format!("{name}|{language}")
}

/// `enabled=true|false`, posted by the Enable / Disable button.
#[derive(Debug, Default, Deserialize)]
pub struct EnabledForm {
    #[serde(default)]
    enabled: String,
}

/// An automation with a page of its own that can be enabled, disabled and deleted (a
/// trigger, a reminder rule), through its service's use cases.
pub trait Switchable: 'static {
    /// "Trigger", "Reminder rule".
    const NOUN: &'static str;
    /// Where its list is (after a delete).
    const LIST: &'static str;
    /// What being disabled means, after "is disabled: ".
    const WHILE_DISABLED: &'static str;
    /// Its page.
    fn page(id: &str) -> String;
    /// Enables or disables it; answers its name.
    fn switch(
        state: &AppState,
        actor: Actor,
        id: String,
        enabled: bool,
    ) -> impl Future<Output = ServiceResult<String>>;
    fn delete(
        state: &AppState,
        actor: Actor,
        id: String,
    ) -> impl Future<Output = ServiceResult<()>>;
}

/// `POST {page}/enabled` with `enabled=true|false`, then back to its page.
pub async fn set_enabled<S: Switchable>(
    req: HttpRequest,
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<EnabledForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let enabled = form.enabled == "true";
    let name = S::switch(&state, auth.actor(), id.clone(), enabled).await?;
    session.success(if enabled {
        format!("{} \"{name}\" is enabled.", S::NOUN)
    } else {
        format!("{} \"{name}\" is disabled: {}", S::NOUN, S::WHILE_DISABLED)
    });
    Ok(redirect_response(&req, &S::page(&id)))
}

/// `POST {page}/delete` (the page asks first), then to the list.
pub async fn delete<S: Switchable>(
    req: HttpRequest,
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    S::delete(&state, auth.actor(), path.into_inner()).await?;
    session.success(format!(
        "{} deleted; the messages it sent stay in the history.",
        S::NOUN
    ));
    Ok(redirect_response(&req, S::LIST))
}

/// A refused save as the form shows it (422): the problems by field and the message above
/// them (a name already taken is the name field's problem). Anything else stays an error.
pub fn form_refusal(e: ServiceError) -> Result<(FieldProblems, String), ServiceError> {
    match e {
        ServiceError::Invalid {
            fields, message, ..
        } => Ok((fields, message)),
        ServiceError::Conflict { message, .. } => {
            let mut fields = FieldProblems::new();
            fields.add("name", message.clone());
            Ok((fields, message))
        }
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_choice_is_name_and_language_or_none() {
        assert_eq!(
            template_choice("order_shipped|en_US"),
            Some(("order_shipped".into(), "en_US".into()))
        );
        assert_eq!(template_choice(""), None);
        assert_eq!(
            template_choice(&template_value("a", "de")),
            Some(("a".into(), "de".into()))
        );
    }

    #[test]
    fn a_taken_name_is_the_name_fields_problem() {
        let (fields, message) =
            form_refusal(ServiceError::conflict("name_taken", "Taken.")).expect("shown");
        assert_eq!(fields.get("name"), Some("Taken."));
        assert_eq!(message, "Taken.");
        assert!(form_refusal(ServiceError::NotFound("x".into())).is_err());
    }
}
