//! How records map onto SQLite tables: identifier checks, quoting, column types, and the cached
//! layout of each table.

use std::collections::HashMap;

use roost_core::{FieldValue, Record};

pub use crate::names::{DEVICE, TIME};

/// Quotes an identifier for SQLite (`"` doubled). Every name reaches SQL through this, after
/// [`check_record`] has validated it.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQLite column type for a field value. Booleans are stored as 0/1 either way; declaring
/// their column `BOOLEAN` lets `roost export` read them back as booleans.
pub fn column_type(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Int(_) => "INTEGER",
        FieldValue::Bool(_) => "BOOLEAN",
        FieldValue::Float(_) => "REAL",
        FieldValue::Str(_) => "TEXT",
    }
}

/// Checks the record's names ([`crate::names::check_record`]) and SQLite's own reserved
/// table names.
pub fn check_record(r: &Record) -> Result<(), String> {
    crate::names::check_record(r)?;
    if r.measurement.to_ascii_lowercase().starts_with("sqlite_") {
        return Err(format!("measurement {:?}: names starting with sqlite_ are reserved", r.measurement));
    }
    Ok(())
}

/// The known layout of one table.
#[derive(Debug, Clone)]
pub struct Table {
    /// The table's name as created.
    pub name: String,
    /// Column names in table order, `time` and `device` first.
    pub columns: Vec<String>,
    /// Lower-cased column name -> position in `columns`.
    pub index: HashMap<String, usize>,
    /// `INSERT INTO "t" ("time", "device", ...) VALUES (?1, ?2, ...)` over every column.
    pub insert_sql: String,
}

impl Table {
    pub fn new(name: String, columns: Vec<String>) -> Self {
        let index = columns.iter().enumerate().map(|(i, c)| (c.to_ascii_lowercase(), i)).collect();
        let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let params: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let insert_sql =
            format!("INSERT INTO {} ({}) VALUES ({})", quote(&name), cols.join(", "), params.join(", "));
        Table { name, columns, index, insert_sql }
    }

    /// Names in the record that the table has no column for yet, with their types.
    pub fn missing<'r>(&self, r: &'r Record) -> Vec<(&'r str, &'static str)> {
        let tags = r.tags.keys().map(|k| (k.as_str(), "TEXT"));
        let fields = r.fields.iter().map(|(k, v)| (k.as_str(), column_type(v)));
        tags.chain(fields).filter(|(k, _)| !self.index.contains_key(&k.to_ascii_lowercase())).collect()
    }
}
