//! Lists of contacts: create, rename and delete them (their contacts stay), each with its audit
//! entry. Membership changes are contact use cases (`service::contacts`) and imports'.

use super::{Change, FieldProblems, ServiceError, ServiceResult, Services};
use crate::domain::audit::Actor;
use crate::domain::user::DisplayName;
use crate::storage::lists::{self, List, ListCount};
use crate::storage::{DbConnection, is_unique_violation};

/// The list with this public id, or "This list was not found."
pub fn list_or_404(conn: &mut DbConnection, public_id: &str) -> ServiceResult<List> {
    lists::find_by_public_id(conn, public_id)?.ok_or_else(|| ServiceError::not_found("This list"))
}

/// A list's name, checked as every name in Herald is (the words speak of a list name).
pub fn list_name(raw: &str) -> Result<String, String> {
    DisplayName::parse(raw)
        .map(DisplayName::into_inner)
        .map_err(|e| e.replace("a name", "a list name"))
}

fn name_taken(name: &str) -> String {
    format!("There is already a list called \"{name}\".")
}

/// Every list, by name.
pub async fn all(svc: &Services) -> ServiceResult<Vec<List>> {
    svc.read(|conn| Ok(lists::all(conn)?)).await
}

/// Every list with its number of members.
pub async fn all_with_counts(svc: &Services) -> ServiceResult<Vec<ListCount>> {
    svc.read(|conn| Ok(lists::all_with_counts(conn)?)).await
}

/// Creates a list. A bad or taken name is `Invalid` with the problem on the field `name`.
pub async fn create(svc: &Services, actor: Actor, raw_name: &str) -> ServiceResult<List> {
    let mut problems = FieldProblems::new();
    let Some(name) = problems.check("name", list_name(raw_name)) else {
        return Err(ServiceError::invalid_fields("invalid_name", problems));
    };
    svc.write(actor, move |change| create_in(change, &name))
        .await
}

pub fn create_in(change: &mut Change<'_>, name: &str) -> ServiceResult<List> {
    let list = lists::create(change.conn, name).map_err(|e| {
        if is_unique_violation(&e) {
            let mut problems = FieldProblems::new();
            problems.add("name", name_taken(name));
            ServiceError::invalid_fields("list_exists", problems)
        } else {
            e.into()
        }
    })?;
    change.audit(
        "list.created",
        "list",
        Some(&list.public_id),
        serde_json::json!({"name": list.name}),
    )?;
    Ok(list)
}

/// Renames a list: `Invalid` ("invalid_name") for a bad name, `Conflict` ("list_exists") for a
/// name another list has. Answers the new name.
pub async fn rename(
    svc: &Services,
    actor: Actor,
    public_id: String,
    raw_name: &str,
) -> ServiceResult<String> {
    let name = list_name(raw_name).map_err(|e| ServiceError::invalid("invalid_name", e))?;
    svc.write(actor, move |change| {
        let list = list_or_404(change.conn, &public_id)?;
        lists::rename(change.conn, list.id, &name).map_err(|e| {
            if is_unique_violation(&e) {
                ServiceError::conflict("list_exists", name_taken(&name))
            } else {
                e.into()
            }
        })?;
        change.audit(
            "list.renamed",
            "list",
            Some(&list.public_id),
            serde_json::json!({"from": list.name, "to": name}),
        )?;
        Ok(name)
    })
    .await
}

/// Deletes a list; its contacts stay. Answers the list as it was.
pub async fn delete(svc: &Services, actor: Actor, public_id: String) -> ServiceResult<List> {
    svc.write(actor, move |change| {
        let list = list_or_404(change.conn, &public_id)?;
        lists::delete(change.conn, list.id)?;
        change.audit(
            "list.deleted",
            "list",
            Some(&list.public_id),
            serde_json::json!({"name": list.name}),
        )?;
        Ok(list)
    })
    .await
}
