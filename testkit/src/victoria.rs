//! Reading back what a VictoriaMetrics holds: raw samples from `/api/v1/export`, PromQL from
//! `/api/v1/query`. New samples become searchable a few seconds after the write: callers poll.

use serde_json::Value;

use crate::post_form;

/// Every series the VictoriaMetrics at `url` holds that matches `selector`
/// (`{__name__="env_seq"}`, `{__name__=~"conf_.+"}`): one object per series, with its `metric`
/// (the labels, `__name__` included), `values` and `timestamps` (ms).
pub async fn export(url: &str, selector: &str) -> Vec<Value> {
    let resp = post_form("VictoriaMetrics", format!("{url}/api/v1/export"), &[("match[]", selector)]).await;
    let text = resp.text().await.unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Runs the PromQL instant query `promql` at `time` (Unix seconds), past the server's cache, and
/// returns the whole answer (`{"data": {"result": [...]}}`).
pub async fn query(url: &str, promql: &str, time: i64) -> Value {
    let form = [("query", promql), ("time", &time.to_string()), ("nocache", "1")];
    post_form("VictoriaMetrics", format!("{url}/api/v1/query"), &form).await.json().await.unwrap()
}
