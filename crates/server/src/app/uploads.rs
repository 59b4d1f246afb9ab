//! Upload areas: files staged before a submit names them with `upload_id`.

use spillway_blob::ByteStream;
use spillway_core::api::ObjectInfo;
use spillway_core::auth::Action;
use spillway_core::keys::{upload_key, uploads_prefix, validate_relative_path};
use spillway_core::{Error, Result};

use super::Caller;
use crate::ids::{new_upload_id, validate_upload_id};
use crate::state::AppState;

/// Open an upload area in the caller's tenant and return its id. Nothing is stored until a
/// file arrives: the id only names a prefix in the tenant.
pub async fn create(state: &AppState, caller: Caller<'_>) -> Result<String> {
    caller.require(Action::Submit)?;
    let tenant = caller.tenant()?;
    ensure_tenant(state, caller, &tenant).await?;
    Ok(new_upload_id())
}

/// Store one file at `path` in the upload area `id`. `body` opens the file's bytes; it is
/// called only once the request has been checked, so nothing is read before.
pub async fn put(
    state: &AppState,
    caller: Caller<'_>,
    id: &str,
    path: &str,
    body: impl FnOnce() -> Result<ByteStream>,
) -> Result<ObjectInfo> {
    caller.require(Action::Submit)?;
    validate_upload_id(id)?;
    validate_relative_path(path)?;
    let tenant = caller.tenant()?;
    let stream = body()?;
    ensure_tenant(state, caller, &tenant).await?;
    let key = upload_key(&tenant, id, path);
    let size = state.blobs.put(&key, stream).await?;
    tracing::debug!(%tenant, upload = %id, %path, size, "upload file stored");
    Ok(ObjectInfo {
        path: path.to_string(),
        size,
    })
}

/// Delete the upload area `id` of the caller's tenant, e.g. after a submit that failed and
/// will not be tried again.
pub async fn discard(state: &AppState, caller: Caller<'_>, id: &str) -> Result<()> {
    validate_upload_id(id)?;
    let tenant = caller.tenant()?;
    super::jobs::discard(state, &uploads_prefix(&tenant, id)).await;
    Ok(())
}

/// A tenant-bound token's tenant exists by construction; an admin of every tenant may name
/// any, so check it before files are stored under its prefix.
async fn ensure_tenant(state: &AppState, caller: Caller<'_>, tenant: &str) -> Result<()> {
    if !caller.all_tenants() {
        return Ok(());
    }
    let tenants = state.store.tenant_list().await?;
    if tenants.iter().any(|t| t.name == tenant) {
        Ok(())
    } else {
        Err(Error::not_found(format!(
            "tenant {tenant:?} not found: create it with POST /v1/tenants first"
        )))
    }
}
