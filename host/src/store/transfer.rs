//! Moving a deployment between databases (SQLite to Postgres, or back):
//! `cairn export` writes every table as JSON lines, `cairn import` loads
//! them into an empty, migrated database. Waiting runs keep their snapshots,
//! waits and deadlines, so they complete on the new database.
//!
//! The format: a header line `{"cairn_export": 1, "schema_version": N}`,
//! then one line per row, `{"table": T, "row": {column: value}}`, where a
//! value is a number, a string, `{"base64": ...}` for bytes, or null.

use super::StoreError;
use super::db::{Backend, Store};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sqlx::any::AnyTypeInfoKind;
use sqlx::{AssertSqlSafe, Column, Executor, Row, SqlSafeStr, TypeInfo};
use std::io::{BufRead, Write};

/// Every table, parents before children.
const TABLES: [&str; 14] = [
    "tenants",
    "api_keys",
    "journeys",
    "journey_versions",
    "runs",
    "steps",
    "outbox",
    "events",
    "skipped_enrollments",
    "contacts",
    "preferences",
    "suppressions",
    "templates",
    "host_secrets",
];

/// Tables whose `id` comes from a sequence on Postgres.
const IDENTITIES: [&str; 4] = ["runs", "outbox", "events", "skipped_enrollments"];

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bytes,
}

fn kind(info: &sqlx::any::AnyTypeInfo) -> Kind {
    match info.kind() {
        AnyTypeInfoKind::Blob => Kind::Bytes,
        AnyTypeInfoKind::Text => Kind::Text,
        _ if info.name().eq_ignore_ascii_case("TEXT") => Kind::Text,
        _ => Kind::Int,
    }
}

impl Store {
    /// A table's columns and their kinds, as this database declares them.
    async fn columns(&self, table: &str) -> Result<Vec<(String, Kind)>, StoreError> {
        let described = self
            .pool()
            .describe(AssertSqlSafe(format!("SELECT * FROM {table}")).into_sql_str())
            .await?;
        Ok(described
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), kind(c.type_info())))
            .collect())
    }

    /// Writes every row of every table to `out`; how many rows.
    ///
    /// # Errors
    /// A database failure, or `out` failing.
    pub async fn export(&self, out: &mut impl Write) -> Result<u64, StoreError> {
        let io = |e: std::io::Error| StoreError::Invalid(format!("writing the export: {e}"));
        writeln!(
            out,
            "{}",
            json!({"cairn_export": 1, "schema_version": super::schema_version()})
        )
        .map_err(io)?;
        let mut rows = 0;
        for table in TABLES {
            let columns = self.columns(table).await?;
            let list: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            let sql = format!("SELECT {} FROM {table}", list.join(", "));
            for row in sqlx::query(AssertSqlSafe(sql))
                .fetch_all(self.pool())
                .await?
            {
                let mut object = Map::new();
                for (i, (name, kind)) in columns.iter().enumerate() {
                    let value = match kind {
                        Kind::Int => row.try_get::<Option<i64>, _>(i)?.map(Value::from),
                        Kind::Text => row.try_get::<Option<String>, _>(i)?.map(Value::from),
                        Kind::Bytes => row
                            .try_get::<Option<Vec<u8>>, _>(i)?
                            .map(|b| json!({"base64": STANDARD.encode(b)})),
                    };
                    object.insert(name.clone(), value.unwrap_or(Value::Null));
                }
                writeln!(out, "{}", json!({"table": table, "row": object})).map_err(io)?;
                rows += 1;
            }
        }
        Ok(rows)
    }

    /// Loads an export into this database, which must hold no journeys yet;
    /// how many rows. Leases are dropped: the new hosts claim the runs.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a database that is not empty, an export of
    /// another schema version, or a malformed line; a database failure
    /// (nothing is imported then).
    pub async fn import(&self, input: impl BufRead) -> Result<u64, StoreError> {
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journeys")
            .fetch_one(self.pool())
            .await?;
        if existing > 0 {
            return Err(StoreError::Invalid(
                "the target database already has journeys: import into an empty, migrated database"
                    .into(),
            ));
        }
        let mut kinds = std::collections::HashMap::new();
        for table in TABLES {
            kinds.insert(table, self.columns(table).await?);
        }
        let mut tx = self.write_tx().await?;
        if tx.backend == super::db::Backend::Postgres {
            // The input may be a slow pipe: this transaction may idle between rows.
            sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0")
                .execute(&mut *tx)
                .await?;
        }
        let mut rows = 0;
        for (number, line) in input.lines().enumerate() {
            let bad =
                |why: String| StoreError::Invalid(format!("export line {}: {why}", number + 1));
            let line = line.map_err(|e| bad(e.to_string()))?;
            let value: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            if number == 0 {
                if value["schema_version"] != json!(super::schema_version()) {
                    return Err(bad(format!(
                        "the export is of schema version {}, this cairn's is {}",
                        value["schema_version"],
                        super::schema_version()
                    )));
                }
                continue;
            }
            let table = value["table"].as_str().unwrap_or_default();
            let columns = TABLES
                .iter()
                .find(|t| **t == table)
                .and_then(|t| kinds.get(t))
                .ok_or_else(|| bad(format!("unknown table {table:?}")))?;
            let row = value["row"]
                .as_object()
                .ok_or_else(|| bad("no row".into()))?;
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            // The default tenant exists in every new database.
            let conflict = if table == "tenants" {
                " ON CONFLICT(id) DO UPDATE SET name = excluded.name, limits = excluded.limits, \
                 delivery = excluded.delivery"
            } else {
                ""
            };
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({}){conflict}",
                names.join(", "),
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (name, kind) in columns {
                let value = row.get(name).unwrap_or(&Value::Null);
                query = match kind {
                    Kind::Int => query.bind(value.as_i64()),
                    Kind::Text => query.bind(value.as_str().map(str::to_string)),
                    Kind::Bytes => query.bind(
                        value["base64"]
                            .as_str()
                            .map(|b| STANDARD.decode(b))
                            .transpose()
                            .map_err(|e| bad(e.to_string()))?,
                    ),
                };
            }
            query.execute(&mut *tx).await?;
            rows += 1;
        }
        sqlx::query("UPDATE runs SET lease_owner = NULL, lease_until = NULL")
            .execute(&mut *tx)
            .await?;
        if tx.backend == Backend::Postgres {
            for table in IDENTITIES {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                )))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(rows)
    }
}
