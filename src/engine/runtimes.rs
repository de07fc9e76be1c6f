//! External runtimes: runtimes served by workers outside this binary (the Python SDK's, for
//! one). A worker registers each (name, description, the JSON Schema of its `runtime_config`);
//! the server records them, so an agent of an external runtime is checked against the newest
//! recorded schema at `CreateAgent`/`UpdateAgent`, whether or not a worker of it is connected.
//! Built-in runtimes keep their names: a registration that names one is refused whole.
//!
//! Schemas are compiled with the `jsonschema` crate (without its HTTP and file resolvers, so a
//! schema's remote `$ref` is an error rather than a fetch made by the server).

use serde_json::Value;

use super::{Engine, EngineError};
use crate::contract::Registration;
use crate::domain::Agent;
use crate::runtime::RuntimeRegistry;
use crate::store::{RuntimeRecord, RuntimeUpsert};

/// The most validation errors one refusal lists; the rest are counted.
const MAX_LISTED_ERRORS: usize = 5;

impl Engine {
    /// Records the external runtimes a worker serves. Refused whole, writing nothing, when a
    /// name is a built-in runtime's (`AlreadyExists`), is given twice, or its schema is not a
    /// valid JSON Schema (`InvalidArgument`).
    pub async fn register_runtimes(
        &self,
        builtin: &RuntimeRegistry,
        registration: &Registration,
    ) -> Result<(), EngineError> {
        let mut upserts: Vec<RuntimeUpsert> = Vec::with_capacity(registration.runtimes.len());
        for spec in &registration.runtimes {
            if builtin.get(&spec.name).is_some() {
                return Err(EngineError::AlreadyExists(format!(
                    "runtime `{}` is built into Cairn and cannot be served by an external \
                     worker; register the worker's runtime under another name (built-in: {})",
                    spec.name,
                    builtin.names().join(", ")
                )));
            }
            if upserts.iter().any(|u| u.name == spec.name) {
                return Err(EngineError::InvalidArgument(format!(
                    "runtime `{}` is registered twice in one request",
                    spec.name
                )));
            }
            compile(&spec.name, &spec.config_schema)?;
            upserts.push(RuntimeUpsert {
                name: spec.name.clone(),
                description: spec.description.clone(),
                config_schema: spec.config_schema.clone(),
            });
        }
        self.store
            .upsert_runtimes(&registration.worker_id, &upserts, self.now())
            .await?;
        Ok(())
    }

    /// Every external runtime ever registered, by name, with its newest registration.
    pub async fn external_runtimes(&self) -> Result<Vec<RuntimeRecord>, EngineError> {
        Ok(self.store.list_runtimes().await?)
    }

    /// Checks an agent of a runtime that is not built in against the newest schema its workers
    /// registered; an unknown runtime is an error that lists the runtimes there are.
    pub(super) async fn check_external(
        &self,
        builtin: &RuntimeRegistry,
        agent: &Agent,
    ) -> Result<(), EngineError> {
        let Some(runtime) = self.store.external_runtime(&agent.runtime).await? else {
            let external = self.store.list_runtimes().await?;
            let mut names: Vec<String> = builtin.names().iter().map(|n| n.to_string()).collect();
            names.extend(external.into_iter().map(|r| r.name));
            names.sort();
            return Err(EngineError::InvalidArgument(format!(
                "unknown runtime `{}`; supported runtimes: {}",
                agent.runtime,
                names.join(", ")
            )));
        };
        let validator = compile(&runtime.name, &runtime.config_schema)?;
        let config = agent
            .configuration
            .get("runtime_config")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let errors: Vec<String> = validator
            .iter_errors(&config)
            .map(|e| format!("{}: {e}", field(&e.instance_path().to_string())))
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        let mut message = format!(
            "configuration does not suit runtime `{}` (its schema, as registered by worker `{}`): {}",
            runtime.name,
            runtime.worker_id,
            errors
                .iter()
                .take(MAX_LISTED_ERRORS)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        if errors.len() > MAX_LISTED_ERRORS {
            message.push_str(&format!("; and {} more", errors.len() - MAX_LISTED_ERRORS));
        }
        Err(EngineError::InvalidArgument(message))
    }
}

/// Compiles a registered schema; one that is not a valid JSON Schema is the worker's mistake.
fn compile(name: &str, schema: &Value) -> Result<jsonschema::Validator, EngineError> {
    jsonschema::validator_for(schema).map_err(|e| {
        EngineError::InvalidArgument(format!(
            "config_schema_json of runtime `{name}` is not a valid JSON Schema: {e}"
        ))
    })
}

/// A JSON pointer into `runtime_config` as the field people write: `/a/0/b` is
/// `runtime_config.a[0].b`.
fn field(pointer: &str) -> String {
    let mut field = String::from("runtime_config");
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            field.push_str(&format!("[{part}]"));
        } else {
            field.push('.');
            field.push_str(&part);
        }
    }
    field
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn pointers_become_the_fields_people_write() {
        assert_eq!(field(""), "runtime_config");
        assert_eq!(field("/temperature"), "runtime_config.temperature");
        assert_eq!(field("/tools/0/name"), "runtime_config.tools[0].name");
        assert_eq!(field("/a~1b"), "runtime_config.a/b");
    }
}
