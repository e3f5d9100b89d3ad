//! Cryptocurrency wallet addresses, `crypto_wallet`.
//!
//! Each is one word (no word byte on either side), checked with its own
//! checksum, never by its shape alone:
//! - Bitcoin legacy and script addresses, Base58Check: `1…` (P2PKH) or
//!   `3…` (P2SH), 26–35 characters of the Base58 alphabet, decoding to a
//!   version byte (0 or 5), a 20-byte hash and 4 check bytes, the first 4
//!   of SHA-256(SHA-256(version and hash)). Random text passes one time in
//!   four billion, so these are reported anywhere.
//! - Bitcoin SegWit addresses, Bech32 (BIP 173) and Bech32m (BIP 350):
//!   `bc1…`, all lower or all upper case, whose BCH checksum holds, with a
//!   witness version 0 program of 20 or 32 bytes (Bech32) or a version 1–16
//!   program of 2–40 bytes (Bech32m). Reported anywhere. (Testnet `tb1`
//!   addresses hold no real coins and are not looked for.)
//! - Ethereum addresses: `0x` and 40 hex digits. In mixed case the case of
//!   each letter is an EIP-55 checksum (Keccak-256 of the lower-case hex),
//!   which a random mix passes one time in several thousand or more:
//!   reported anywhere if it holds. All lower or all upper case carries no
//!   checksum, and `0x` and 40 hex digits is also how a 160-bit hash is
//!   written in code, so those only after a context word (`eth`,
//!   `ethereum`, `wallet`, `metamask`, `erc20`, …).
//!
//! Git SHAs, SHA-256 sums and UUIDs have no `0x`, contain `0` and are not
//! valid Base58 or Bech32, so none of them comes close.

use std::ops::Range;

use sha2::Digest as _;
use sha3::Digest as _;

use super::boundary::{byte_before, is_word_byte};
use super::context;
use super::hold::trailing_run_start;

/// Longest address match in bytes: a Bech32 string may have 90.
pub(crate) const MAX_LEN: usize = 90;

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// A decoded Base58Check address: version, 20-byte hash, 4 check bytes.
const BASE58_BYTES: usize = 25;
const BECH32: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const BECH32_CONST: u32 = 1;
const BECH32M_CONST: u32 = 0x2bc8_30a3;
const ETH_CONTEXT: &[&[u8]] = &[
    b"eth",
    b"ethereum",
    b"ether",
    b"wallet",
    b"metamask",
    b"erc20",
    b"erc-20",
    b"usdt",
    b"usdc",
    b"crypto",
];

/// The address starting at the digit run `run` (`1…`, `3…`, `0x…`) or
/// two letters before it (`bc1…`), if any.
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let starts_word = |at: usize| !byte_before(bytes, at).is_some_and(is_word_byte);
    match bytes[run.start] {
        b'1' if run.start >= 2
            && bytes[run.start - 2..run.start].eq_ignore_ascii_case(b"bc")
            && starts_word(run.start - 2) =>
        {
            find_bech32(bytes, run.start - 2)
        }
        b'1' | b'3' if starts_word(run.start) => find_base58(bytes, run.start),
        b'0' if run.len() == 1 && bytes.get(run.end) == Some(&b'x') && starts_word(run.start) => {
            find_ethereum(bytes, run.start)
        }
        _ => None,
    }
}

/// Where an address that more text could still change may start in
/// `bytes` (the length if nowhere): the start of the trailing word, if it
/// is at most [`MAX_LEN`] long and starts like an address (`1`, `3`, `0`,
/// `b`). Every candidate is a whole word, decided by the byte after it.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let word = trailing_run_start(bytes, MAX_LEN + 1, is_word_byte);
    let starts_like_one = matches!(bytes.get(word), Some(b'1' | b'3' | b'0' | b'b' | b'B'));
    if n - word > MAX_LEN || !starts_like_one {
        return n;
    }
    word
}

/// End of the word starting at `start`, reading at most `max + 1` bytes.
fn word_end(bytes: &[u8], start: usize, max: usize) -> usize {
    let tail = &bytes[start..bytes.len().min(start + max + 1)];
    start + tail.iter().take_while(|&&b| is_word_byte(b)).count()
}

fn find_base58(bytes: &[u8], start: usize) -> Option<Range<usize>> {
    let end = word_end(bytes, start, 35);
    let address = &bytes[start..end];
    if !(26..=35).contains(&address.len()) {
        return None;
    }
    let mut decoded = [0u8; BASE58_BYTES];
    for &c in address {
        let mut carry = BASE58.iter().position(|&a| a == c)? as u32;
        for byte in decoded.iter_mut().rev() {
            carry += 58 * u32::from(*byte);
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        if carry != 0 {
            return None;
        }
    }
    // Each leading `1` stands for one leading zero byte, and the number
    // must fill the rest exactly.
    let ones = address.iter().take_while(|&&c| c == b'1').count();
    let zeros = decoded.iter().take_while(|&&b| b == 0).count();
    let version_ok = match address[0] {
        b'1' => decoded[0] == 0,
        _ => decoded[0] == 5,
    };
    if ones != zeros || !version_ok {
        return None;
    }
    let (payload, check) = decoded.split_at(21);
    let hash = sha2::Sha256::digest(sha2::Sha256::digest(payload));
    (hash[..4] == *check).then_some(start..end)
}

fn find_bech32(bytes: &[u8], start: usize) -> Option<Range<usize>> {
    let end = word_end(bytes, start, MAX_LEN);
    let address = &bytes[start..end];
    if address.len() > MAX_LEN {
        return None;
    }
    let upper = address.iter().all(|b| !b.is_ascii_lowercase());
    let lower = address.iter().all(|b| !b.is_ascii_uppercase());
    // Data: the witness version, the program and six checksum characters.
    let data_chars = &address[3..];
    if !(upper || lower) || data_chars.len() < 1 + 6 {
        return None;
    }
    let mut data = [0u8; MAX_LEN];
    for (slot, &c) in data.iter_mut().zip(data_chars) {
        *slot = BECH32.iter().position(|&a| a == c.to_ascii_lowercase())? as u8;
    }
    let data = &data[..data_chars.len()];
    let checksum = bech32_polymod(data);
    let version = data[0];
    let program_len = program_bytes(&data[1..data.len() - 6])?;
    let valid = match version {
        0 => checksum == BECH32_CONST && (program_len == 20 || program_len == 32),
        1..=16 => checksum == BECH32M_CONST && (2..=40).contains(&program_len),
        _ => false,
    };
    valid.then_some(start..end)
}

/// The BIP 173 checksum over the human-readable part `bc` and `data`.
fn bech32_polymod(data: &[u8]) -> u32 {
    const GENERATOR: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    // `bc` expanded: the high bits of each letter, 0, the low bits.
    let hrp = [b'b' >> 5, b'c' >> 5, 0, b'b' & 31, b'c' & 31];
    hrp.iter().chain(data).fold(1u32, |chk, &value| {
        let top = chk >> 25;
        let mut chk = ((chk & 0x1ff_ffff) << 5) ^ u32::from(value);
        for (i, g) in GENERATOR.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
        chk
    })
}

/// How many bytes the 5-bit groups `program` make, if they regroup into
/// whole bytes with zero padding of less than 5 bits.
fn program_bytes(program: &[u8]) -> Option<usize> {
    let bits = program.len() * 5;
    let padding = bits % 8;
    let last = *program.last()?;
    (padding < 5 && u32::from(last) & ((1 << padding) - 1) == 0).then_some(bits / 8)
}

fn find_ethereum(bytes: &[u8], start: usize) -> Option<Range<usize>> {
    let end = start + 42;
    let hex = bytes.get(start + 2..end)?;
    if !hex.iter().all(u8::is_ascii_hexdigit) || bytes.get(end).is_some_and(|&b| is_word_byte(b)) {
        return None;
    }
    let has_lower = hex.iter().any(u8::is_ascii_lowercase);
    let has_upper = hex.iter().any(u8::is_ascii_uppercase);
    let found = if has_lower && has_upper {
        eip55_valid(hex)
    } else {
        context::appears_before(bytes, start, ETH_CONTEXT)
    };
    found.then_some(start..end)
}

/// EIP-55: each letter of the address is upper case exactly when the
/// matching nibble of Keccak-256(lower-case hex) is 8 or more.
fn eip55_valid(hex: &[u8]) -> bool {
    let lower = hex.to_ascii_lowercase();
    let hash = sha3::Keccak256::digest(&lower);
    hex.iter().enumerate().all(|(i, &c)| {
        let nibble = if i % 2 == 0 {
            hash[i / 2] >> 4
        } else {
            hash[i / 2] & 0x0f
        };
        !c.is_ascii_alphabetic() || c.is_ascii_uppercase() == (nibble >= 8)
    })
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs_resuming;
    use super::*;

    fn wallets(text: &str) -> Vec<&str> {
        found_by_runs_resuming(find_at, text)
    }

    #[test]
    fn finds_bitcoin_base58_addresses() {
        for address in [
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            "16Yeky6GMjeNkAiNcBY7ZhrLoMSgg1BoyZ",
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
        ] {
            assert_eq!(
                wallets(&format!("send to {address}.")),
                vec![address],
                "{address}"
            );
        }
        assert_eq!(
            wallets("my wallet address is: 16Yeky6GMjeNkAiNcBY7ZhrLoMSgg1BoyZ"),
            vec!["16Yeky6GMjeNkAiNcBY7ZhrLoMSgg1BoyZ"]
        );
        assert_eq!(
            wallets("16Yeky6GMjeNkAiNcBY7ZhrLoMSgg1BoyZ 3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy").len(),
            2
        );
    }

    #[test]
    fn finds_bitcoin_segwit_addresses() {
        for address in [
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297",
            "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ",
            "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",
        ] {
            assert_eq!(
                wallets(&format!("pay {address} now")),
                vec![address],
                "{address}"
            );
        }
    }

    #[test]
    fn finds_ethereum_addresses() {
        for address in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(
                wallets(&format!("to {address}.")),
                vec![address],
                "{address}"
            );
        }
        assert_eq!(
            wallets("My Ethereum wallet is 0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"),
            vec!["0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"]
        );
        // No checksum in one case: only with context.
        assert_eq!(
            wallets("ETH: 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
            vec!["0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"]
        );
        assert_eq!(
            wallets("wallet 0x52908400098527886E0F7030069857D2E4169EE7"),
            vec!["0x52908400098527886E0F7030069857D2E4169EE7"]
        );
    }

    #[test]
    fn rejects_wallet_lookalikes() {
        for text in [
            "16Yeky6GMjeNkAiNcBY7ZhrLoMSgg1BoyZ2", // one too many
            "my wallet address is: 16Yeky6GMjeNkAiNcBY7ZhrLoMSgg1BoyZ2",
            "16Yeky6GMjeNkAiNcBY7ZhrLoMSgg1BoyA", // checksum
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLz",
            "x1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", // inside a word
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa_",
            "8f953371d3e85eddb89b05ed6b9e680791055315c73e1025ab5dba7bb2aee189",
            "3f786850e387550fdab836ed7e6dc881de23001b", // a git SHA
            "1024 3000 10.5",
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdp", // checksum
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdQ", // mixed case
            "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3296",
            "xbc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "lowercase address 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "checksummed but invalid address 0xdbF03B407c01E7cD3CBea99509d93f8DDdC8C6FB",
            "hash 0xA94A8FE5CCB19BA61C4C0873D391E987982FBBD3",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe", // 39 hex
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed0", // 41 hex
            "0X5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "something 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", // `eth` inside a word
            "uuid 550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert!(wallets(text).is_empty(), "{text}: {:?}", wallets(text));
        }
    }

    #[test]
    fn holds_a_trailing_word_that_may_be_an_address() {
        assert_eq!(hold_from(b"to 1A1zP1eP5QG"), 3);
        assert_eq!(hold_from(b"to bc1q"), 3);
        assert_eq!(hold_from(b"to b"), 3);
        assert_eq!(hold_from(b"to 0x5a"), 3);
        assert_eq!(hold_from(b"to xyz"), 6);
        assert_eq!(hold_from(b"to "), 3);
    }
}
