//! The single pass over digit runs that feeds every number-shaped detector
//! (cards, phones, IBANs, IPv4, national ids, wallets, MAC addresses; the
//! table of them is `numbers.rs`).
//!
//! A *digit run* is a maximal sequence of ASCII digits. Finding runs is the
//! hot loop of the number detectors, and prompts with code and logs have a
//! run every 25 bytes or so, so skipping digit-free blocks is not enough.
//! The text is read in 64-byte blocks, each turned into a bit mask of its
//! digits eight bytes at a time (SWAR, no per-byte branches); runs are then
//! read off the mask with `trailing_zeros`/`trailing_ones`, and only a run
//! that crosses a block edge is walked byte by byte.

use std::ops::Range;

use super::boundary::digit_run_end;

/// Bytes per mask.
const BLOCK: usize = 64;

/// Iterator over the maximal digit runs of `bytes`, left to right.
pub(crate) struct DigitRuns<'a> {
    bytes: &'a [u8],
    /// Offset of the current block, a multiple of [`BLOCK`].
    block: usize,
    /// Bit `i` set iff byte `block + i` is a digit.
    digits: u64,
    /// The digits of `digits` not yet reported as part of a run.
    unreported: u64,
}

/// The maximal digit runs of `bytes`.
pub(crate) fn digit_runs(bytes: &[u8]) -> DigitRuns<'_> {
    let digits = digit_mask(bytes, 0);
    DigitRuns {
        bytes,
        block: 0,
        digits,
        unreported: digits,
    }
}

impl Iterator for DigitRuns<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        while self.unreported == 0 {
            self.block += BLOCK;
            if self.block >= self.bytes.len() {
                return None;
            }
            self.digits = digit_mask(self.bytes, self.block);
            self.unreported = self.digits;
        }
        let first = self.unreported.trailing_zeros();
        let start = self.block + first as usize;
        let length = (self.digits >> first).trailing_ones();
        if first + length < 64 {
            self.unreported &= u64::MAX << (first + length);
            return Some(start..start + length as usize);
        }
        // The run reaches the end of the block and may go on.
        let end = digit_run_end(self.bytes, self.block + BLOCK);
        self.block = end - end % BLOCK;
        self.digits = digit_mask(self.bytes, self.block);
        self.unreported = self.digits & (u64::MAX << (end - self.block));
        Some(start..end)
    }
}

/// Bit `i` set iff `bytes[at + i]` is an ASCII digit, for the up to 64
/// bytes from `at`.
fn digit_mask(bytes: &[u8], at: usize) -> u64 {
    let tail = bytes.get(at..).unwrap_or_default();
    let mut mask = 0u64;
    match tail.get(..BLOCK) {
        Some(block) => {
            for (i, chunk) in block.chunks_exact(8).enumerate() {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                mask |= digit_bits(u64::from_le_bytes(word)) << (8 * i);
            }
        }
        None => {
            for (i, &b) in tail.iter().enumerate() {
                mask |= u64::from(b.is_ascii_digit()) << i;
            }
        }
    }
    mask
}

/// Bit `i` set iff byte `i` of `word` (little-endian) is an ASCII digit.
///
/// SWAR: per byte, compare the low seven bits against `0x30` and `0x3A` by
/// adding so that the result crosses `0x80` (no carry leaves a byte), keep
/// ASCII bytes only, then gather the eight high bits with a multiply.
fn digit_bits(word: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = word & LOW7;
    let at_least_0 = low + 0x5050_5050_5050_5050; // + (0x80 - 0x30)
    let above_9 = low + 0x4646_4646_4646_4646; // + (0x80 - 0x3A)
    let digits = at_least_0 & !above_9 & !word & HIGH;
    // Bits at 8i+7 → bit i.
    (digits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// What `find_at` finds starting at each digit run of `text`: the test
/// driver of every digit-run detector.
#[cfg(test)]
pub(crate) fn found_by_runs(
    find_at: fn(&[u8], Range<usize>) -> Option<Range<usize>>,
    text: &str,
) -> Vec<&str> {
    let bytes = text.as_bytes();
    digit_runs(bytes)
        .filter_map(|run| find_at(bytes, run))
        .map(|m| &text[m])
        .collect()
}

/// Like [`found_by_runs`], for detectors whose match can span later digit
/// runs (letters between them): a run inside the last match is skipped.
#[cfg(test)]
pub(crate) fn found_by_runs_resuming(
    find_at: fn(&[u8], Range<usize>) -> Option<Range<usize>>,
    text: &str,
) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut resume = 0;
    let mut out = Vec::new();
    for run in digit_runs(bytes) {
        if run.start < resume {
            continue;
        }
        if let Some(m) = find_at(bytes, run) {
            resume = m.end;
            out.push(&text[m]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_bits_agree_with_is_ascii_digit_for_every_byte() {
        for b in 0..=255u8 {
            for lane in 0..8 {
                let mut word = [b'a'; 8];
                word[lane] = b;
                let expected = u64::from(b.is_ascii_digit()) << lane;
                assert_eq!(
                    digit_bits(u64::from_le_bytes(word)),
                    expected,
                    "byte {b:#x} in lane {lane}"
                );
            }
        }
    }

    #[test]
    fn runs_are_maximal_and_in_order() {
        let text = "a1 22b333 ".repeat(10) + &"x".repeat(70) + "4444";
        let runs: Vec<&str> = digit_runs(text.as_bytes()).map(|r| &text[r]).collect();
        let mut expected = ["1", "22", "333"].repeat(10);
        expected.push("4444");
        assert_eq!(runs, expected);
    }

    #[test]
    fn finds_digits_at_block_edges() {
        for at in [0, 31, 32, 33, 63, 64, 127, 128, 140] {
            let mut text = vec![b'x'; 141];
            text[at] = b'7';
            let runs: Vec<_> = digit_runs(&text).collect();
            assert_eq!(runs, vec![at..at + 1], "digit at {at}");
        }
        assert_eq!(digit_runs(b"").count(), 0);
        // Runs that cross one or more block boundaries.
        let mut text = vec![b'x'; 300];
        text[60..70].fill(b'1');
        text[100..260].fill(b'2');
        text[299] = b'3';
        let runs: Vec<_> = digit_runs(&text).collect();
        assert_eq!(runs, vec![60..70, 100..260, 299..300]);
        let all_digits = vec![b'9'; 200];
        assert_eq!(digit_runs(&all_digits).collect::<Vec<_>>(), vec![0..200]);
        assert_eq!(digit_runs(b"no digits here").count(), 0);
    }
}
