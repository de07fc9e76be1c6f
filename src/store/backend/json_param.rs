//! [`JsonParam`]: a JSON value bound to a statement as its text, typed `json` on PostgreSQL and
//! TEXT on SQLite, for the columns that keep JSON as text (PostgreSQL's since 0016). sqlx's
//! `Json` binds JSONB, which PostgreSQL parses into its tree and prints back to store in a JSON
//! column (and which `COALESCE` with a JSON column refuses).

use sqlx::encode::{Encode, IsNull};
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentsBuffer, SqliteTypeInfo};

/// PostgreSQL's `json` type.
const JSON_OID: Oid = Oid(114);

/// A JSON value's text, bound as JSON.
#[derive(Debug)]
pub(super) struct JsonParam(String);

impl JsonParam {
    /// `value` as compact JSON text.
    pub(super) fn of(value: &serde_json::Value) -> Self {
        JsonParam(value.to_string())
    }
}

impl sqlx::Type<Postgres> for JsonParam {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(JSON_OID)
    }
}

/// JSON's binary form is its text.
impl Encode<'_, Postgres> for JsonParam {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode_by_ref(&self.0.as_str(), buf)
    }
}

impl sqlx::Type<Sqlite> for JsonParam {
    fn type_info() -> SqliteTypeInfo {
        <String as sqlx::Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for JsonParam {
    fn encode(self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.0, buf)
    }

    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode_by_ref(&self.0, buf)
    }
}
