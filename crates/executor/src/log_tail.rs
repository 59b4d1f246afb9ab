//! The last bytes of a command's interleaved stdout and stderr.

use std::collections::VecDeque;

/// A ring buffer that keeps the last `capacity` bytes written to it.
#[derive(Debug)]
pub struct LogTail {
    buf: VecDeque<u8>,
    capacity: usize,
}

impl LogTail {
    /// An empty tail keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(capacity.min(64 * 1024)),
            capacity,
        }
    }

    /// Append `bytes`, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.capacity)..];
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.capacity);
        self.buf.drain(..overflow);
        self.buf.extend(bytes);
    }

    /// The kept bytes as text: invalid UTF-8 is replaced, and a character cut in half at the
    /// start is dropped, so the result is never longer than the capacity.
    pub fn to_text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        // Skip UTF-8 continuation bytes left over from a character whose start was dropped.
        let start = bytes
            .iter()
            .take(3)
            .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
            .count();
        let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
        if text.len() <= self.capacity {
            return text;
        }
        // Replacement characters are wider than the bytes they replace; trim from the front.
        let mut cut = text.len() - self.capacity;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text[cut..].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_bytes() {
        let mut tail = LogTail::new(10);
        tail.push(b"0123456789abc");
        assert_eq!(tail.to_text(), "3456789abc");
        tail.push(b"XY");
        assert_eq!(tail.to_text(), "56789abcXY");
    }

    #[test]
    fn a_character_cut_at_the_start_is_dropped() {
        let mut tail = LogTail::new(4);
        tail.push("aé€".as_bytes()); // 1 + 2 + 3 bytes; the last 4 start inside "é"
        assert_eq!(tail.to_text(), "€");
    }

    #[test]
    fn invalid_bytes_never_make_the_text_longer_than_the_capacity() {
        let mut tail = LogTail::new(8);
        tail.push(&[0xff; 20]);
        let text = tail.to_text();
        assert!(text.len() <= 8, "{}", text.len());
        assert!(text.contains('\u{fffd}'));
    }
}
