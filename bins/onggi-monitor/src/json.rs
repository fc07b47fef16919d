//! The two JSON documents the monitor writes, by hand (no serde: it would not fit the
//! memory budget): a Docker `json-file` log record and the exit record.
//!
//! Strings are escaped as JSON requires: `"` and `\` with a backslash, control
//! characters as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`. Output is not always UTF-8,
//! so each maximal invalid byte sequence becomes one `\ufffd` (as
//! `String::from_utf8_lossy` does, and as Docker's own encoder does).

use crate::time::Rfc3339;

/// A sink for bytes: a log file's buffer, a fixed buffer, or a `Vec` in tests.
pub trait Put {
    /// Append `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

#[cfg(test)]
impl Put for std::vec::Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A borrowed buffer being filled; what does not fit is cut off (messages, names and
/// the exit record are far smaller than the buffers they are built in).
#[derive(Debug)]
pub struct Cursor<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Cursor<'b> {
    /// An empty cursor at the start of `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Cursor { buf, len: 0 }
    }

    /// The bytes written, for as long as the buffer is borrowed.
    pub fn into_bytes(self) -> &'b [u8] {
        &self.buf[..self.len]
    }
}

impl Put for Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }
}

/// The escape sequence for an ASCII byte, if it needs one.
fn escape(b: u8) -> Option<&'static [u8]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const CONTROL: [[u8; 6]; 32] = {
        let mut t = [*b"\\u0000"; 32];
        let mut i = 0;
        while i < 32 {
            t[i][4] = HEX[i >> 4];
            t[i][5] = HEX[i & 15];
            i += 1;
        }
        t
    };
    match b {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        0x08 => Some(b"\\b"),
        0x0c => Some(b"\\f"),
        0..=0x1f => Some(&CONTROL[b as usize]),
        _ => None,
    }
}

const REPLACEMENT: &[u8] = b"\\ufffd";

/// Write `bytes` as the inside of a JSON string (without the quotes).
pub fn put_escaped(out: &mut impl Put, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0; // first byte not yet written
        for (i, &b) in valid.iter().enumerate() {
            if let Some(esc) = escape(b) {
                out.put(&valid[start..i]);
                out.put(esc);
                start = i + 1;
            }
        }
        out.put(&valid[start..]);
        if !chunk.invalid().is_empty() {
            out.put(REPLACEMENT);
        }
    }
}

/// The length [`put_escaped`] writes for `bytes`.
pub fn escaped_len(bytes: &[u8]) -> usize {
    bytes
        .utf8_chunks()
        .map(|chunk| {
            let valid = chunk.valid().as_bytes();
            let escaped: usize = valid
                .iter()
                .map(|&b| escape(b).map_or(1, <[u8]>::len))
                .sum();
            let invalid = if chunk.invalid().is_empty() {
                0
            } else {
                REPLACEMENT.len()
            };
            escaped + invalid
        })
        .sum()
}

/// Write a decimal integer.
pub fn put_int(out: &mut impl Put, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        out.put(b"-");
    }
    out.put(&digits[i..]);
}

/// Which pipe a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    /// The name Docker writes in the `stream` field.
    pub fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

const LOG_OPEN: &[u8] = b"{\"log\":\"";
const LOG_STREAM: &[u8] = b"\",\"stream\":\"";
const LOG_TIME: &[u8] = b"\",\"time\":\"";
const LOG_CLOSE: &[u8] = b"\"}\n";

/// Write one Docker `json-file` record, newline-terminated:
/// `{"log":"hello\n","stream":"stdout","time":"2026-11-22T15:04:13.280685984Z"}`.
pub fn put_log_record(out: &mut impl Put, line: &[u8], stream: Stream, time: &Rfc3339) {
    out.put(LOG_OPEN);
    put_escaped(out, line);
    out.put(LOG_STREAM);
    out.put(stream.name());
    out.put(LOG_TIME);
    out.put(time.as_bytes());
    out.put(LOG_CLOSE);
}

/// The length [`put_log_record`] writes.
pub fn log_record_len(line: &[u8], stream: Stream, time: &Rfc3339) -> usize {
    LOG_OPEN.len()
        + escaped_len(line)
        + LOG_STREAM.len()
        + stream.name().len()
        + LOG_TIME.len()
        + time.as_bytes().len()
        + LOG_CLOSE.len()
}

/// Write the exit record, newline-terminated:
/// `{"exit_code":137,"signal":9,"finished_at":"…Z","oom_killed":false}`.
pub fn put_exit_record(out: &mut impl Put, exit_code: i32, signal: Option<i32>, at: &Rfc3339) {
    out.put(b"{\"exit_code\":");
    put_int(out, exit_code.into());
    out.put(b",\"signal\":");
    match signal {
        Some(s) => put_int(out, s.into()),
        None => out.put(b"null"),
    }
    out.put(b",\"finished_at\":\"");
    out.put(at.as_bytes());
    out.put(b"\",\"oom_killed\":false}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Time;

    fn escaped(bytes: &[u8]) -> String {
        let mut v = Vec::new();
        put_escaped(&mut v, bytes);
        assert_eq!(v.len(), escaped_len(bytes), "length of {bytes:?}");
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(escaped(b"plain"), "plain");
        assert_eq!(escaped(b"a\"b\\c"), r#"a\"b\\c"#);
        assert_eq!(escaped(b"\n\r\t\x08\x0c"), r"\n\r\t\b\f");
        assert_eq!(
            escaped(b"\x00\x01\x1b\x1f\x7f"),
            "\\u0000\\u0001\\u001b\\u001f\x7f"
        );
        assert_eq!(escaped(b""), "");
    }

    #[test]
    fn keeps_utf8_and_replaces_invalid_bytes() {
        assert_eq!(escaped("한국 ✓ 😀".as_bytes()), "한국 ✓ 😀");
        assert_eq!(escaped(b"a\xffb"), r"a\ufffdb");
        // A truncated sequence is one maximal invalid subsequence: one replacement.
        assert_eq!(escaped(b"\xe2\x9c"), r"\ufffd");
        assert_eq!(escaped(b"\xe2\x9cx\xc3"), r"\ufffdx\ufffd");
        assert_eq!(escaped(b"\xff\xfe"), r"\ufffd\ufffd");
    }

    #[test]
    fn escaped_output_is_the_json_of_the_lossy_string() {
        let samples: [&[u8]; 5] = [
            b"\x00\xff\"\\\n",
            "grüße\u{2028}".as_bytes(),
            b"\xf0\x9f\x98",
            b"\xed\xa0\x80", // a UTF-16 surrogate encoded as UTF-8: invalid
            &[0x41; 3],
        ];
        for s in samples {
            let json = format!("\"{}\"", escaped(s));
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, String::from_utf8_lossy(s), "{json}");
        }
    }

    #[test]
    fn integers() {
        for n in [0, 7, -1, 137, i64::MAX, i64::MIN] {
            let mut v = Vec::new();
            put_int(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
        }
    }

    #[test]
    fn log_record_matches_docker_and_its_length() {
        let t = Rfc3339::new(Time {
            secs: 1_795_359_853,
            nanos: 280_685_984,
        });
        let mut v = Vec::new();
        put_log_record(&mut v, b"hello\n", Stream::Stdout, &t);
        assert_eq!(
            String::from_utf8(v.clone()).unwrap(),
            "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-22T15:04:13.280685984Z\"}\n"
        );
        assert_eq!(v.len(), log_record_len(b"hello\n", Stream::Stdout, &t));
        let parsed: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(parsed["log"], "hello\n");
    }

    #[test]
    fn exit_record() {
        let t = Rfc3339::new(Time { secs: 0, nanos: 5 });
        let mut v = Vec::new();
        put_exit_record(&mut v, 137, Some(9), &t);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "{\"exit_code\":137,\"signal\":9,\"finished_at\":\"1970-01-01T00:00:00.000000005Z\",\"oom_killed\":false}\n"
        );
        let mut v = Vec::new();
        put_exit_record(&mut v, 3, None, &t);
        let parsed: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(parsed["exit_code"], 3);
        assert!(parsed["signal"].is_null());
    }

    #[test]
    fn cursor_cuts_off() {
        let mut buf = [0u8; 4];
        let mut b = Cursor::new(&mut buf);
        b.put(b"ab");
        b.put(b"cdef");
        assert_eq!(b.into_bytes(), b"abcd");
    }
}
