//! Cutting a pipe's byte stream into log lines, as Docker does.
//!
//! A complete line (up to and including its `\n`) becomes one record. A line that has
//! not ended yet waits in a fixed buffer (16 KiB in the monitor) for its rest; when the
//! buffer fills, its contents become a record without a trailing newline and the line
//! goes on in the next record, and at end of file whatever waits becomes the last
//! record. A full buffer is cut before an incomplete UTF-8 character at its end, so
//! that the character is not turned into two replacement characters.
//!
//! Complete lines that arrive whole in one read are emitted straight from the read
//! buffer, without a copy.

use crate::sys::Time;

/// Splits one stream into records.
#[derive(Debug)]
pub struct LineSplitter<'b> {
    /// The waiting partial line: `pending[..len]`.
    pending: &'b mut [u8],
    len: usize,
    /// When the waiting line's first bytes were read (the record's time, as in Docker).
    since: Time,
}

impl<'b> LineSplitter<'b> {
    /// A splitter whose longest record is `pending.len()` bytes (at least 4: one
    /// UTF-8 character).
    pub fn new(pending: &'b mut [u8]) -> Self {
        assert!(pending.len() >= 4, "a line buffer must hold a character");
        LineSplitter {
            pending,
            len: 0,
            since: Time { secs: 0, nanos: 0 },
        }
    }

    /// Feed bytes read at time `now`; `emit(line, time)` is called for each record.
    pub fn feed(&mut self, mut data: &[u8], now: Time, emit: &mut impl FnMut(&[u8], Time)) {
        while !data.is_empty() {
            if self.len == 0 {
                self.since = now;
            }
            let room = self.pending.len() - self.len;
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) if self.len == 0 => {
                    emit(&data[..=i], now);
                    data = &data[i + 1..];
                }
                Some(i) => {
                    self.append(&data[..=i]);
                    emit(&self.pending[..self.len], self.since);
                    self.len = 0;
                    data = &data[i + 1..];
                }
                None if data.len() < room => {
                    self.append(data);
                    data = &[];
                }
                None => {
                    // The line is longer than a record: emit a full buffer now.
                    self.append(window);
                    data = &data[window.len()..];
                    let keep = incomplete_utf8_tail(&self.pending[..self.len]);
                    let cut = self.len - keep;
                    emit(&self.pending[..cut], self.since);
                    self.pending.copy_within(cut..self.len, 0);
                    self.len = keep;
                    self.since = now;
                }
            }
        }
    }

    /// End of file: emit the waiting partial line, if any.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8], Time)) {
        if self.len > 0 {
            emit(&self.pending[..self.len], self.since);
            self.len = 0;
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.pending[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

/// How many bytes at the end of `buf` are the start of a UTF-8 character whose
/// remaining bytes have not arrived yet (0 to 3).
fn incomplete_utf8_tail(buf: &[u8]) -> usize {
    for back in 1..=buf.len().min(3) {
        let b = buf[buf.len() - back];
        if b & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let needed = match b {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 1, // ASCII or a byte that starts no character
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Time = Time { secs: 1, nanos: 0 };
    const T1: Time = Time { secs: 2, nanos: 0 };

    fn run(cap: usize, chunks: &[(&[u8], Time)]) -> Vec<(Vec<u8>, Time)> {
        let mut buf = vec![0u8; cap];
        let mut s = LineSplitter::new(&mut buf);
        let mut out = Vec::new();
        let mut emit = |l: &[u8], t: Time| out.push((l.to_vec(), t));
        for (c, t) in chunks {
            s.feed(c, *t, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    fn lines(out: &[(Vec<u8>, Time)]) -> Vec<&[u8]> {
        out.iter().map(|(l, _)| l.as_slice()).collect()
    }

    #[test]
    fn complete_lines_are_records() {
        let out = run(16, &[(b"a\nbb\n\n", T0)]);
        assert_eq!(lines(&out), [&b"a\n"[..], b"bb\n", b"\n"]);
    }

    #[test]
    fn a_partial_line_waits_for_its_rest_and_keeps_its_first_time() {
        let out = run(16, &[(b"ab", T0), (b"c\nd", T1), (b"e\n", T1)]);
        assert_eq!(lines(&out), [&b"abc\n"[..], b"de\n"]);
        assert_eq!(out[0].1, T0);
        assert_eq!(out[1].1, T1);
    }

    #[test]
    fn the_last_partial_line_is_emitted_at_end_of_file() {
        let out = run(16, &[(b"x\ntail", T0)]);
        assert_eq!(lines(&out), [&b"x\n"[..], b"tail"]);
    }

    #[test]
    fn a_long_line_is_split_at_the_buffer_size() {
        let long = [b'x'; 20];
        let out = run(8, &[(&long, T0), (b"\n", T1)]);
        assert_eq!(lines(&out), [&[b'x'; 8][..], &[b'x'; 8], b"xxxx\n"]);
        // Also when the line starts as a partial one.
        let out = run(8, &[(b"abc", T0), (b"defghijk\n", T1)]);
        assert_eq!(lines(&out), [&b"abcdefgh"[..], b"ijk\n"]);
        // A newline exactly after a full buffer ends the next record.
        let out = run(4, &[(b"abcd\n", T0)]);
        assert_eq!(lines(&out), [&b"abcd"[..], b"\n"]);
    }

    #[test]
    fn a_full_buffer_is_not_cut_inside_a_character() {
        // "aaaaaa한" = 6 + 3 bytes; a cut at 8 would split the 3-byte character.
        let s = "aaaaaa한국\n";
        let out = run(8, &[(s.as_bytes(), T0)]);
        assert_eq!(lines(&out), [&b"aaaaaa"[..], "한국\n".as_bytes()]);
        for (l, _) in &out {
            assert!(std::str::from_utf8(l).is_ok());
        }
    }

    #[test]
    fn any_chunking_gives_the_same_records() {
        let input: Vec<u8> = (0..3000u32)
            .flat_map(|i| {
                let n = (i * 7919) % 37;
                let mut l = vec![b'a' + (i % 26) as u8; n as usize];
                l.push(b'\n');
                l
            })
            .collect();
        let whole = run(32, &[(&input, T0)]);
        for size in [1, 2, 3, 5, 31, 32, 33, 4096] {
            let chunks: Vec<(&[u8], Time)> = input.chunks(size).map(|c| (c, T0)).collect();
            assert_eq!(lines(&run(32, &chunks)), lines(&whole), "chunks of {size}");
        }
        let joined: Vec<u8> = whole.iter().flat_map(|(l, _)| l.clone()).collect();
        assert_eq!(joined, input);
    }

    #[test]
    fn incomplete_tails() {
        assert_eq!(incomplete_utf8_tail(b"abc"), 0);
        assert_eq!(incomplete_utf8_tail("a한".as_bytes()), 0);
        assert_eq!(incomplete_utf8_tail(&"a한".as_bytes()[..3]), 2);
        assert_eq!(incomplete_utf8_tail(&"a한".as_bytes()[..2]), 1);
        assert_eq!(incomplete_utf8_tail(&"😀".as_bytes()[..3]), 3);
        assert_eq!(incomplete_utf8_tail(b"\xff"), 0);
        assert_eq!(incomplete_utf8_tail(b""), 0);
    }
}
