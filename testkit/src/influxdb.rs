//! Reading back what an InfluxDB 1.x holds: InfluxQL over its `/query` endpoint.

use serde_json::Value;

use crate::post_form;

/// Runs the InfluxQL statement `q` in database `db` of the InfluxDB 1.x at `url` and returns the
/// whole answer (`{"results": [{"series": [...]}]}`; an error in `q` is in the answer, not a
/// panic). `epoch` is the unit of the times in it (`"s"`, `"ns"`; RFC 3339 text when `None`).
pub async fn query(url: &str, db: &str, q: &str, epoch: Option<&str>) -> Value {
    let mut form = vec![("db", db), ("q", q)];
    form.extend(epoch.map(|e| ("epoch", e)));
    post_form("InfluxDB", format!("{url}/query"), &form).await.json().await.unwrap()
}
