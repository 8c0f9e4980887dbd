//! The open-files limit. Every connection is a descriptor, and so is every
//! plugin file, body segment and database socket: the common default soft
//! limit of 1,024 is reached by a thousand idle clients. The soft limit is
//! raised to the hard limit at start, and the connection cap is kept below
//! what it allows.

/// Descriptors kept for everything but connections (store files, body
/// segments, plugins, database and delivery sockets).
pub const RESERVED: u64 = 512;

/// The soft limit before and after, and the hard limit.
#[derive(Debug, Clone, Copy)]
pub struct OpenFiles {
    pub was: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raises the soft limit to the hard limit and logs both.
pub fn raise() -> Option<OpenFiles> {
    let (was, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            return None;
        }
    };
    let now = match rlimit::increase_nofile_limit(hard) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, soft = was, hard, "cannot raise the open-files limit");
            was
        }
    };
    tracing::info!(soft = now, was, hard, "open-files limit");
    Some(OpenFiles { was, now, hard })
}

/// How many connections the public listener may hold: what the config
/// asks for, lowered to what the open-files limit leaves after
/// [`RESERVED`] and the admin listener's `admin` connections.
pub fn connection_cap(configured: usize, files: Option<OpenFiles>, admin: usize) -> usize {
    let Some(files) = files else {
        return configured;
    };
    let room = files.now.saturating_sub(RESERVED + admin as u64);
    let cap = configured
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1);
    if cap < configured {
        tracing::warn!(
            configured,
            cap,
            open_files = files.now,
            "server.max_connections lowered to what the open-files limit allows"
        );
    }
    cap
}
