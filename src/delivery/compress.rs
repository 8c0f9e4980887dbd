//! Compressed deliveries (`compress = "gzip"` on a target).
//!
//! The Standard Webhooks signature covers the **uncompressed** payload: a
//! receiver's HTTP layer (a framework's body parser, a proxy) undoes
//! `Content-Encoding` before application code sees the body, and that
//! decoded body is what its verifier is handed. Signing the compressed
//! bytes would make every such receiver fail verification.

use std::io::Write;

/// How a target's deliveries are compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
}

impl Compression {
    pub fn parse(text: &str) -> Option<Compression> {
        match text {
            "gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }

    /// The `Content-Encoding` it is sent under.
    pub fn content_encoding(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
        }
    }
}

/// Bodies up to this size are compressed on the async worker; larger ones
/// on the blocking pool (a 64 MiB body is tens of milliseconds of CPU).
const INLINE: usize = 64 * 1024;

/// `body` compressed for the wire.
pub async fn compress(how: Compression, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if body.len() <= INLINE {
        return compress_now(how, &body);
    }
    tokio::task::spawn_blocking(move || compress_now(how, &body))
        .await
        .map_err(std::io::Error::other)?
}

fn compress_now(how: Compression, body: &[u8]) -> std::io::Result<Vec<u8>> {
    match how {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 3 + 64),
                flate2::Compression::fast(),
            );
            e.write_all(body)?;
            e.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gzip_round_trips() {
        for size in [0, 100, INLINE + 1] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let packed = compress(Compression::Gzip, body.clone()).await.unwrap();
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut back)
                .unwrap();
            assert_eq!(back, body);
        }
        assert_eq!(Compression::parse("gzip"), Some(Compression::Gzip));
        assert_eq!(Compression::parse("br"), None);
    }
}
