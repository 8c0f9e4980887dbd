//! Wake-ups between nodes over `LISTEN/NOTIFY`, on one dedicated
//! connection per node. Notifications are an optimisation, never the only
//! way work is found: they are not durable, so every loop that waits for
//! one also looks again on a timer, and a node whose listening connection
//! dropped wakes everything once it is back.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, NoTls, Socket};

/// The one channel hookyard notifies on.
pub const CHANNEL: &str = "hookyard";

/// What another node (or this one) announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// These targets have new due deliveries.
    Due(Vec<String>),
    /// An operator (on `by`, a node id) changed this target's state.
    Control { target: String, by: String },
    /// A plugin was pushed into the database.
    Plugins,
    /// The listening connection was lost and is back: anything may have
    /// been missed.
    Everything,
}

pub fn due_payload(targets: &[&str]) -> String {
    format!("due:{}", targets.join("\u{1}"))
}

pub fn control_payload(target: &str, by: &str) -> String {
    format!("control:{by}\u{1}{target}")
}

pub const PLUGINS_PAYLOAD: &str = "plugins";

fn parse(payload: &str) -> Option<Wake> {
    if let Some(rest) = payload.strip_prefix("due:") {
        return Some(Wake::Due(rest.split('\u{1}').map(str::to_string).collect()));
    }
    if let Some(rest) = payload.strip_prefix("control:") {
        let (by, target) = rest.split_once('\u{1}')?;
        return Some(Wake::Control {
            target: target.to_string(),
            by: by.to_string(),
        });
    }
    (payload == PLUGINS_PAYLOAD).then_some(Wake::Plugins)
}

/// Listens until the runtime ends, reconnecting after a failure.
pub fn spawn(config: tokio_postgres::Config, tls: super::Tls, wakes: broadcast::Sender<Wake>) {
    tokio::spawn(async move {
        let mut lost = false;
        loop {
            let listened = match &tls {
                super::Tls::Plain => listen(&config, NoTls, &wakes, lost).await,
                super::Tls::Rustls(t) => listen(&config, t.clone(), &wakes, lost).await,
            };
            if let Err(e) = listened {
                tracing::warn!(error = %e, "lost the notification connection; reconnecting");
            }
            lost = true;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// One notification connection, until it fails.
async fn listen<T>(
    config: &tokio_postgres::Config,
    tls: T,
    wakes: &broadcast::Sender<Wake>,
    lost: bool,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    // The connection is driven by its own task, which forwards what the
    // server sends unprompted.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if tx.send(m).is_err() {
                break;
            }
        }
    });
    let result = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        if lost {
            tracing::info!("listening for other nodes' notifications again");
            let _ = wakes.send(Wake::Everything);
        }
        while let Some(m) = rx.recv().await {
            match m? {
                AsyncMessage::Notification(n) if n.channel() == CHANNEL => {
                    if let Some(w) = parse(n.payload()) {
                        let _ = wakes.send(w);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        assert_eq!(
            parse(&due_payload(&["a", "b c"])),
            Some(Wake::Due(vec!["a".into(), "b c".into()]))
        );
        assert_eq!(
            parse(&control_payload("t", "node-1")),
            Some(Wake::Control {
                target: "t".into(),
                by: "node-1".into()
            })
        );
        assert_eq!(parse(PLUGINS_PAYLOAD), Some(Wake::Plugins));
        assert_eq!(parse("nonsense"), None);
    }
}
