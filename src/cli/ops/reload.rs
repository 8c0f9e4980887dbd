//! `hookyard reload`: asks a running hookyard to read its config file
//! again (as `SIGHUP` does, but answered: what changed, or why nothing
//! did). The exit status is non-zero when the file was refused, so a
//! deploy script stops there.

use anyhow::Result;

use super::output::{emit, print_json};
use super::{Conn, connect, decode};
use crate::api::types::ConfigReloaded;

pub(super) async fn run(conn: Conn) -> Result<()> {
    let client = connect(&conn)?;
    let v = client.post(&["admin", "config", "reload"], None).await?;
    if conn.json {
        return print_json(&v);
    }
    let done: ConfigReloaded = decode(v)?;
    let mut out = format!(
        "config reloaded (sha256 {})\n",
        done.sha256.as_deref().unwrap_or("-")
    );
    if done.changes.is_empty() {
        out.push_str("  no source, target or plugin setting changed\n");
    }
    for c in &done.changes {
        out.push_str(&format!("  {c}\n"));
    }
    for k in &done.needs_restart {
        out.push_str(&format!(
            "  {k}: changed in the file; keeps its running value until a restart\n"
        ));
    }
    emit(&out)
}
