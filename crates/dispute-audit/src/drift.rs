//! `disputes audit drift`: the views rebuilt aside from the log and compared, row by row and
//! column by column, with the live views. Run it with the projector caught up: a live row
//! that has not yet seen the latest events differs from its rebuilt twin.

use std::collections::BTreeMap;
use std::sync::Arc;

use dispute_store::{Store, ViewShape, ViewTables};

use crate::AuditError;

/// One row that differs between a live view and its rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRow {
    /// `disputes` or `timeline`.
    pub view: &'static str,
    /// The row's key: the order id, or `<order id>:<sequence>` for the timeline.
    pub key: String,
    /// `(column, live, rebuilt)` for each column that differs; a missing row is `None`.
    pub columns: Vec<(String, Option<String>, Option<String>)>,
}

impl std::fmt::Display for DriftRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.as_deref().map_or("(none)".to_string(), |v| format!("{v:?}"));
        write!(f, "{} {}:", self.view, self.key)?;
        for (column, live, rebuilt) in &self.columns {
            write!(f, " {column}: live {} rebuilt {};", show(live), show(rebuilt))?;
        }
        Ok(())
    }
}

/// The tables drift builds aside (not those of `disputes projections rebuild`, so both may run).
fn audit_tables() -> ViewTables {
    ViewTables { disputes: "view_disputes_audit".to_string(), timeline: "view_timeline_audit".to_string() }
}

/// Rebuilds every view aside and returns each row that differs from the live views.
pub async fn drift(store: &Arc<Store>, progress: impl FnMut(u64, u64)) -> Result<Vec<DriftRow>, AuditError> {
    let aside = audit_tables();
    let result = async {
        dispute_views::build_aside(store, &aside, progress).await?;
        let mut rows = Vec::new();
        // Every declared column of every view table: a new column is compared without an edit here.
        for ((shape, live), (_, rebuilt)) in ViewTables::live().shaped().into_iter().zip(aside.shaped()) {
            rows.extend(compare(store, shape, live, rebuilt).await?);
        }
        Ok(rows)
    }
    .await;
    dispute_views::drop_aside(store, &aside).await?;
    result
}

type Rows = BTreeMap<Vec<String>, Vec<Option<String>>>;

async fn compare(
    store: &Store,
    shape: &ViewShape,
    live: &str,
    rebuilt: &str,
) -> Result<Vec<DriftRow>, AuditError> {
    let (live_rows, rebuilt_rows) = (read(store, shape, live).await?, read(store, shape, rebuilt).await?);
    let keys: std::collections::BTreeSet<&Vec<String>> =
        live_rows.keys().chain(rebuilt_rows.keys()).collect();
    let mut drift = Vec::new();
    for key in keys {
        let (a, b) = (live_rows.get(key), rebuilt_rows.get(key));
        if a.is_none() || b.is_none() {
            let present = |row: Option<&Vec<Option<String>>>| row.map(|_| "present".to_string());
            let columns = vec![("row".to_string(), present(a), present(b))];
            drift.push(DriftRow { view: shape.name, key: key.join(":"), columns });
            continue;
        }
        let columns: Vec<_> = shape
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, column)| {
                let (a, b) = (a.map(|r| r[i].clone()), b.map(|r| r[i].clone()));
                (a != b).then(|| (column.name.to_string(), a.flatten(), b.flatten()))
            })
            .collect();
        if !columns.is_empty() {
            drift.push(DriftRow { view: shape.name, key: key.join(":"), columns });
        }
    }
    Ok(drift)
}

/// Every row of `table` as text, by key.
async fn read(store: &Store, shape: &ViewShape, table: &str) -> Result<Rows, AuditError> {
    let mut rows = Rows::new();
    for values in store.view_rows_as_text(shape, table).await? {
        let key = values[..shape.key].iter().map(|v| v.clone().unwrap_or_default()).collect();
        rows.insert(key, values);
    }
    Ok(rows)
}
