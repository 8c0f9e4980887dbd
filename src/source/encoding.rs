//! Content codings of webhook bodies (`Content-Encoding`): which ones a
//! request says it used, and the body decoded from them under a hard cap.
//!
//! Signatures are computed by providers over the bytes they send, so the
//! request is verified over the body as received and decoded only after
//! that: a forged request costs no decompression. Decoding streams through
//! the codings' decoders into a buffer that may not grow past the source's
//! `max_decoded_body`: a few hundred KB of gzip that would expand to
//! hundreds of MB is refused after the cap, holding no more than it.
//!
//! Stacked codings (`Content-Encoding: gzip, br`, applied in that order)
//! are decoded in reverse, up to [`MAX_CODINGS`] of them; more is refused
//! as unsupported rather than guessed at, since no provider sends more.

use std::io::Read;

use axum::http::HeaderMap;
use axum::http::header::CONTENT_ENCODING;

/// Most codings one body may be stacked in.
pub const MAX_CODINGS: usize = 3;

/// The zstd window (log2 bytes) a body may ask for: 8 MiB, the size the
/// zstd format asks every decoder to support. Without it a tiny frame may
/// declare a 128 MiB window and have the decoder allocate it.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The most a decoder writes before its output is counted against the cap.
const DECODE_CHUNK: usize = 64 * 1024;

/// A content coding hookyard decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// RFC 9110's `deflate` is zlib-wrapped; some senders send raw deflate
    /// under that name, so both are accepted (told apart by the zlib header).
    Deflate,
    Br,
    Zstd,
}

impl Coding {
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    fn parse(token: &str) -> Option<Coding> {
        match token {
            // RFC 9110 8.4.1.3: x-gzip is gzip.
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            "br" => Some(Coding::Br),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }
}

/// The codings a request's `Content-Encoding` lists, in the order they
/// were applied (`identity` and empty entries are no coding). `Err` names
/// what is not supported.
pub fn codings(headers: &HeaderMap) -> Result<Vec<Coding>, String> {
    let mut out = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| "a Content-Encoding that is not text".to_string())?;
        for token in text.split(',') {
            let token = token.trim().to_ascii_lowercase();
            if token.is_empty() || token == "identity" {
                continue;
            }
            let coding = Coding::parse(&token).ok_or_else(|| {
                let shown: String = token.chars().take(64).collect();
                format!("content coding {shown:?}")
            })?;
            out.push(coding);
        }
    }
    if out.len() > MAX_CODINGS {
        return Err(format!(
            "{} stacked content codings (at most {MAX_CODINGS})",
            out.len()
        ));
    }
    Ok(out)
}

/// The codings as the event records them: `gzip`, or `gzip, br`.
pub fn label(codings: &[Coding]) -> String {
    codings
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// It decodes to more than the limit.
    TooLarge,
    /// It is not what its codings say (corrupt, truncated, wrong coding).
    Invalid(String),
}

/// `received` decoded from `codings` (as [`codings`] lists them), at most
/// `limit` bytes of it. Never holds more than `limit` (plus a read's
/// worth) however far the body would expand.
pub fn decode(received: &[u8], codings: &[Coding], limit: usize) -> Result<Vec<u8>, DecodeError> {
    if codings.is_empty() || received.is_empty() {
        // A sender may label an empty body; there is nothing to decode.
        return if received.len() > limit {
            Err(DecodeError::TooLarge)
        } else {
            Ok(received.to_vec())
        };
    }
    let mut reader: Box<dyn Read + '_> = Box::new(received);
    for coding in codings.iter().rev() {
        reader = wrap(*coding, reader).map_err(invalid)?;
    }
    // Read in fixed chunks rather than one growing buffer: a buffer that
    // doubles copies itself at each step and leaves the allocator holding
    // every size it went through, so a bomb would cost several times the
    // cap. Chunks cost the cap at most, then one copy for a body that fits.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    let mut next = received.len().saturating_mul(4).clamp(4096, DECODE_CHUNK);
    loop {
        let mut chunk = Vec::with_capacity(next);
        let n = (&mut reader)
            .take(next as u64)
            .read_to_end(&mut chunk)
            .map_err(invalid)?;
        total += n;
        if total > limit {
            return Err(DecodeError::TooLarge);
        }
        if n > 0 {
            chunks.push(chunk);
        }
        if n < next {
            break;
        }
        next = DECODE_CHUNK.min(limit + 1 - total);
    }
    Ok(match chunks.len() {
        0 => Vec::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => chunks.concat(),
    })
}

fn invalid(e: std::io::Error) -> DecodeError {
    DecodeError::Invalid(e.to_string())
}

fn wrap<'a>(coding: Coding, inner: Box<dyn Read + 'a>) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match coding {
        // Several gzip members in a row are one body (RFC 1952).
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
        Coding::Deflate => {
            let (head, rest) = peek2(inner)?;
            let zlib = is_zlib_header(&head);
            let stream = std::io::Cursor::new(head).chain(rest);
            if zlib {
                Box::new(flate2::read::ZlibDecoder::new(stream))
            } else {
                Box::new(flate2::read::DeflateDecoder::new(stream))
            }
        }
        Coding::Br => Box::new(brotli_decompressor::Decompressor::new(inner, 8 * 1024)),
        Coding::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(inner)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
    })
}

/// The first two bytes of a stream (fewer if it is shorter), and the rest.
fn peek2<'a>(mut inner: Box<dyn Read + 'a>) -> std::io::Result<(Vec<u8>, Box<dyn Read + 'a>)> {
    let mut head = Vec::with_capacity(2);
    (&mut inner).take(2).read_to_end(&mut head)?;
    Ok((head, inner))
}

/// RFC 1950: method 8 (deflate), a window of at most 32 KiB, and a check
/// value making the two bytes a multiple of 31.
fn is_zlib_header(b: &[u8]) -> bool {
    b.len() == 2
        && b[0] & 0x0f == 8
        && b[0] >> 4 <= 7
        && (u16::from(b[0]) << 8 | u16::from(b[1])) % 31 == 0
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, value.parse().unwrap());
        h
    }

    #[test]
    fn every_coding_decodes() {
        let body = br#"{"hello":"world"}"#.repeat(50);
        let zlib = {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Default::default());
            e.write_all(&body).unwrap();
            e.finish().unwrap()
        };
        let raw = {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
            e.write_all(&body).unwrap();
            e.finish().unwrap()
        };
        let br = {
            let mut out = Vec::new();
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(&body).unwrap();
            drop(w);
            out
        };
        let zstd = zstd::encode_all(&body[..], 3).unwrap();
        for (coding, bytes) in [
            (Coding::Gzip, gzip(&body)),
            (Coding::Deflate, zlib),
            (Coding::Deflate, raw),
            (Coding::Br, br),
            (Coding::Zstd, zstd),
        ] {
            assert_eq!(
                decode(&bytes, &[coding], 1 << 20).unwrap(),
                body,
                "{coding:?}"
            );
        }
    }

    #[test]
    fn stacked_codings_decode_in_reverse() {
        let body = b"stacked".to_vec();
        let twice = gzip(&zstd::encode_all(&body[..], 1).unwrap());
        let listed = codings(&headers("zstd, GZIP")).unwrap();
        assert_eq!(listed, vec![Coding::Zstd, Coding::Gzip]);
        assert_eq!(label(&listed), "zstd, gzip");
        assert_eq!(decode(&twice, &listed, 100).unwrap(), body);
    }

    #[test]
    fn identity_unknown_and_too_many_codings() {
        assert_eq!(codings(&headers("identity")).unwrap(), vec![]);
        assert_eq!(codings(&HeaderMap::new()).unwrap(), vec![]);
        assert!(
            codings(&headers("compress"))
                .unwrap_err()
                .contains("compress")
        );
        assert!(
            codings(&headers("gzip, gzip, gzip, gzip"))
                .unwrap_err()
                .contains("stacked")
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 100 << 10, "{}", bomb.len());
        assert_eq!(
            decode(&bomb, &[Coding::Gzip], 1 << 20),
            Err(DecodeError::TooLarge)
        );
        // Exactly at the limit is fine.
        let at = gzip(&[7u8; 1000]);
        assert_eq!(decode(&at, &[Coding::Gzip], 1000).unwrap().len(), 1000);
        assert_eq!(
            decode(&at, &[Coding::Gzip], 999),
            Err(DecodeError::TooLarge)
        );
    }

    #[test]
    fn bodies_of_several_chunks_come_back_whole_up_to_the_limit() {
        for len in [DECODE_CHUNK * 3 + 17, DECODE_CHUNK * 2] {
            let body: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let packed = gzip(&body);
            assert_eq!(decode(&packed, &[Coding::Gzip], len).unwrap(), body);
            assert_eq!(
                decode(&packed, &[Coding::Gzip], len - 1),
                Err(DecodeError::TooLarge)
            );
        }
    }

    #[test]
    fn corrupt_bodies_are_invalid_and_empty_ones_pass() {
        assert!(matches!(
            decode(b"not gzip at all", &[Coding::Gzip], 100),
            Err(DecodeError::Invalid(_))
        ));
        let mut cut = gzip(b"some text that will be truncated");
        cut.truncate(cut.len() - 6);
        assert!(matches!(
            decode(&cut, &[Coding::Gzip], 100),
            Err(DecodeError::Invalid(_))
        ));
        assert_eq!(decode(b"", &[Coding::Br], 100).unwrap(), b"");
    }
}
