//! Namespaces that isolate: what a call may see, given its token and the namespace it names.
//!
//! The token check ([`super::auth`]) leaves a [`Caller`] on every request: the namespaces its
//! token is bound to, or all of them. A service turns it into a [`Scope`] with
//! [`Scope::of`], which adds the namespace the call names in its `cairn-namespace` metadata
//! (an HTTP header of the same name), for the calls whose request names only an id. Then:
//!
//! - a request with a namespace field asks [`Scope::namespace`], which fills in the token's one
//!   namespace when the field is empty, and refuses a namespace the token is not bound to;
//! - a request with an execution id loads it with [`Scope::execution`], one line, which answers
//!   an execution of another namespace with the very `NOT_FOUND` a missing id gets, so ids of
//!   other tenants cannot even be confirmed to exist. A stream is checked when it opens; an
//!   execution never changes namespace, so nothing it sends later can cross over.

use std::sync::Arc;

use tonic::{Request, Status};
use uuid::Uuid;

use super::error::invalid;
use super::validate;
use crate::domain::DEFAULT_NAMESPACE;
use crate::engine::{Engine, EngineError};
use crate::store::ExecutionRecord;

/// The metadata (and HTTP header) a call names its namespace in when its request has no
/// namespace field.
pub const NAMESPACE_HEADER: &str = "cairn-namespace";

/// Who is calling: the namespaces their token is bound to.
#[derive(Debug, Clone)]
pub struct Caller {
    /// None: every namespace (an unbound token, or authentication off).
    namespaces: Option<Arc<[String]>>,
}

impl Caller {
    /// A caller of every namespace.
    pub fn anyone() -> Caller {
        Caller { namespaces: None }
    }

    /// A caller bound to `namespaces`.
    pub(crate) fn bound(namespaces: Arc<[String]>) -> Caller {
        Caller {
            namespaces: Some(namespaces),
        }
    }

    /// Whether the caller may see `namespace`.
    pub fn admits(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == namespace))
    }
}

/// What one call may touch.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    caller: Caller,
    /// The namespace named in the call's metadata.
    named: Option<String>,
}

impl Scope {
    /// The scope of `request`. The caller comes from the token check, which every route runs
    /// first; a request without one never passed it, and is refused rather than let through.
    pub(crate) fn of<T>(request: &Request<T>) -> Result<Scope, Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::internal("the call reached a service without a token check"))?;
        let named = match request.metadata().get(NAMESPACE_HEADER) {
            None => None,
            Some(value) => {
                let text = value
                    .to_str()
                    .map_err(|_| invalid(format!("{NAMESPACE_HEADER} must be a namespace name")))?;
                if text.is_empty() {
                    None
                } else {
                    Some(validate::namespace(text)?)
                }
            }
        };
        Ok(Scope { caller, named })
    }

    /// Whether the call may see `namespace`.
    pub(crate) fn admits(&self, namespace: &str) -> bool {
        self.caller.admits(namespace) && self.named.as_deref().is_none_or(|n| n == namespace)
    }

    /// The namespace a request with a namespace `field` works in: the field; else the one the
    /// metadata names; else the token's, when it is bound to exactly one; else `default`. One
    /// the token is not bound to is refused.
    pub(crate) fn namespace(&self, field: &str) -> Result<String, Status> {
        let given = match (field.is_empty(), &self.named) {
            (false, Some(named)) if named != field => {
                return Err(invalid(format!(
                    "namespace `{}` and the {NAMESPACE_HEADER} header `{named}` differ: give one",
                    validate::quote(field)
                )));
            }
            (false, _) => Some(validate::namespace(field)?),
            (true, named) => named.clone(),
        };
        let namespace = match (given, &self.caller.namespaces) {
            (Some(namespace), _) => namespace,
            (None, Some(list)) if list.len() == 1 => list[0].clone(),
            (None, Some(list)) if !list.iter().any(|n| n == DEFAULT_NAMESPACE) => {
                return Err(invalid(format!(
                    "this token is bound to the namespaces {}: name one",
                    list.join(", ")
                )));
            }
            (None, _) => DEFAULT_NAMESPACE.to_string(),
        };
        if !self.caller.admits(&namespace) {
            return Err(Status::permission_denied(format!(
                "this token may not use namespace `{namespace}`"
            )));
        }
        Ok(namespace)
    }

    /// Whether the call may touch execution `id`: `NOT_FOUND`, word for word as for an id that
    /// does not exist, when it may not. For calls that need no more of the execution than that
    /// (the check then costs no read for an execution this server runs).
    pub(crate) async fn admit(&self, engine: &Engine, id: Uuid) -> Result<(), Status> {
        if self.admits(&engine.namespace_of(id).await?) {
            Ok(())
        } else {
            Err(EngineError::execution_not_found(id).into())
        }
    }

    /// The execution `id`, when the call may see it; `NOT_FOUND`, word for word as for an id
    /// that does not exist, when it may not.
    pub(crate) async fn execution(
        &self,
        engine: &Engine,
        id: Uuid,
    ) -> Result<ExecutionRecord, Status> {
        let record = engine.execution(id).await?;
        if self.admits(&record.namespace) {
            Ok(record)
        } else {
            Err(EngineError::execution_not_found(id).into())
        }
    }
}
