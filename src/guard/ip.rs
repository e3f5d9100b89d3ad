//! IP addresses.
//!
//! IPv4 candidates come from the digit-run pass: four dot-separated octets
//! of 1–3 digits, each ≤ 255 and without a leading zero (`010` is octal to
//! some parsers and a version component to most readers). The quad must not
//! be part of a longer dotted run (`1.2.3.4.5` is a version, so is
//! `v1.2.3.4`) nor continue a word.
//!
//! IPv6 candidates come from `memchr` over `:`: the token of hex digits,
//! colons and dots around the colon, parsed with `std::net::Ipv6Addr`.
//! Code is full of colons (`std::fmt`, `a::b`, `10:30:00`, `de:ad:be:ef`),
//! so a token must also not continue a word and must have at least one
//! decimal digit and four hex digits. That keeps out `Foo::bar` and
//! `add::dec`; the loopback `::1` is the one short form let in, since it is
//! what people write for "this host" (`[::1]:8080`), and `a::1` is no code.
//!
//! Both report the whole written span: a CIDR prefix length
//! (`192.168.1.0/24`, `2001:db8::/32`; at most 32 for v4 and 128 for v6)
//! and an IPv6 zone id (`fe80::1%eth0`, up to 15 bytes of letters, digits,
//! `_`, `-` and `.`). A prefix or zone that is not one (`10.0.0.0/123`) is
//! left out and the address is reported alone.

use std::net::Ipv6Addr;
use std::ops::Range;

use super::boundary::{byte_before, is_word_byte, number_ends_at, number_starts_at};
use super::hold::{first_from, trailing_run_start};

/// Longest IPv4 match in bytes: `255.255.255.255/32`.
pub(crate) const IPV4_MAX_LEN: usize = 15 + 3;
/// Longest IPv6 address in bytes: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
const IPV6_ADDRESS_MAX_LEN: usize = 45;
/// Longest zone id (an interface name: `IFNAMSIZ` less its NUL).
const ZONE_MAX_LEN: usize = 15;
/// Longest IPv6 match in bytes: an address, `%` and a zone, `/128`.
pub(crate) const IPV6_MAX_LEN: usize = IPV6_ADDRESS_MAX_LEN + 1 + ZONE_MAX_LEN + 4;

/// The IPv4 address starting at the digit run `run`, if any.
pub(crate) fn find_ipv4_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if run.len() > 3 || bytes.get(run.end) != Some(&b'.') {
        return None;
    }
    if !number_starts_at(bytes, run.start, b".") {
        return None;
    }
    let mut pos = run.start;
    for octet in 0..4 {
        if octet > 0 {
            if bytes.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        let digits = bytes.get(pos..)?;
        let len = digits
            .iter()
            .take(4)
            .take_while(|b| b.is_ascii_digit())
            .count();
        let value = digits[..len]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
        if len == 0 || len > 3 || value > 255 || (len > 1 && digits[0] == b'0') {
            return None;
        }
        pos += len;
    }
    if !number_ends_at(bytes, pos, b".") {
        return None;
    }
    Some(run.start..prefix_len_end(bytes, pos, 32).unwrap_or(pos))
}

/// End of the CIDR prefix length (`/0` to `/max`) at `at`, if one is there
/// and is not part of a longer token (`/24.5`, `/24/8`, `/24x`).
fn prefix_len_end(bytes: &[u8], at: usize, max: u32) -> Option<usize> {
    if bytes.get(at) != Some(&b'/') {
        return None;
    }
    let digits = bytes.get(at + 1..)?;
    let len = digits
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let value = digits[..len]
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    let end = at + 1 + len;
    let ok = (1..=3).contains(&len)
        && value <= max
        && (len == 1 || digits[0] != b'0')
        && number_ends_at(bytes, end, b"./");
    ok.then_some(end)
}

/// Where an IPv4 address that more text could still change may start in
/// `bytes` (the length if nowhere): the first digit of the trailing run of
/// digits, dots and slashes, at most `IPV4_MAX_LEN + 1` back (`1.2.3.4.`
/// becomes a version if a digit follows, `1.2.3.4/2` may grow to `/24`).
pub(crate) fn ipv4_hold_from(bytes: &[u8]) -> usize {
    let run = trailing_run_start(bytes, IPV4_MAX_LEN + 1, |b| {
        b.is_ascii_digit() || b == b'.' || b == b'/'
    });
    first_from(bytes, run, |b| b.is_ascii_digit())
}

/// Where an IPv6 address that more text could still change may start in
/// `bytes` (the length if nowhere).
///
/// A token is read from at most five hex digits before a colon through the
/// hex digits, colons and dots after it, then a zone id and a prefix
/// length, and decided by the byte after them (two if it is a dot or
/// slash): a token that reaches the end lies in the trailing run of those
/// bytes, within `IPV6_MAX_LEN + 1` (a longer one is rejected whatever
/// follows). Without a colon in that run, one may still come: then only the
/// last five hex digits can join it.
pub(crate) fn ipv6_hold_from(bytes: &[u8]) -> usize {
    let is_token_byte = |b: u8| {
        b.is_ascii_hexdigit() || b == b':' || b == b'.' || b == b'/' || b == b'%' || is_zone_byte(b)
    };
    let mut run = trailing_run_start(bytes, IPV6_MAX_LEN + 1, is_token_byte);
    if !bytes[run..].contains(&b':') {
        run = run.max(bytes.len().saturating_sub(5));
    }
    first_from(bytes, run, |b| b.is_ascii_hexdigit() || b == b':')
}

/// What [`find_ipv6_around`] learned about the token around a colon.
pub(crate) struct Ipv6Token {
    /// The address, if the token is one.
    pub(crate) address: Option<Range<usize>>,
    /// End of the token: no colon before it can start another candidate.
    pub(crate) end: usize,
}

/// The IPv6 address in the token around the colon at `colon`.
pub(crate) fn find_ipv6_around(bytes: &[u8], colon: usize) -> Ipv6Token {
    let is_hex = |b: &u8| b.is_ascii_hexdigit();
    // Left: at most one group of hex digits (an earlier colon would already
    // have started this token).
    let mut start = colon;
    while start > 0 && colon - start < 5 && is_hex(&bytes[start - 1]) {
        start -= 1;
    }
    // Right: colons, hex digits and the dots of an embedded IPv4 suffix.
    let limit = (start + IPV6_ADDRESS_MAX_LEN + 1).min(bytes.len());
    let mut end = colon;
    while end < limit && (is_hex(&bytes[end]) || bytes[end] == b':' || bytes[end] == b'.') {
        end += 1;
    }
    let token_end = end;
    // A full stop ending a sentence is not part of the address.
    while end > colon && bytes[end - 1] == b'.' {
        end -= 1;
    }
    let address = ipv6_token_ok(bytes, start, end).then(|| {
        let end = zone_end(bytes, end).unwrap_or(end);
        start..prefix_len_end(bytes, end, 128).unwrap_or(end)
    });
    Ipv6Token {
        end: address.as_ref().map_or(token_end, |a| a.end.max(token_end)),
        address,
    }
}

fn is_zone_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// End of the zone id (`%eth0`) at `at`, if one is there; a full stop or
/// dash ending the sentence is not part of it.
fn zone_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'%') {
        return None;
    }
    let tail = bytes.get(at + 1..)?;
    let mut len = tail.iter().take_while(|&&b| is_zone_byte(b)).count();
    if len > ZONE_MAX_LEN {
        return None;
    }
    while len > 0 && matches!(tail[len - 1], b'.' | b'-') {
        len -= 1;
    }
    (len > 0).then_some(at + 1 + len)
}

fn ipv6_token_ok(bytes: &[u8], start: usize, end: usize) -> bool {
    let token = &bytes[start..end];
    if token.len() > IPV6_ADDRESS_MAX_LEN
        || byte_before(bytes, start).is_some_and(|b| is_word_byte(b) || b == b':')
        || bytes
            .get(end)
            .is_some_and(|&b| is_word_byte(b) || b == b':')
    {
        return false;
    }
    let hex_digits = token.iter().filter(|b| b.is_ascii_hexdigit()).count();
    if (hex_digits < 4 || !token.iter().any(u8::is_ascii_digit)) && token != b"::1" {
        return false;
    }
    // The token is ASCII by construction, so this never fails; failing
    // would only mean "not an address".
    std::str::from_utf8(token)
        .ok()
        .and_then(|s| s.parse::<Ipv6Addr>().ok())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::super::digits::digit_runs;
    use super::*;

    fn ipv4s(text: &str) -> Vec<&str> {
        let bytes = text.as_bytes();
        digit_runs(bytes)
            .filter_map(|run| find_ipv4_at(bytes, run))
            .map(|m| &text[m])
            .collect()
    }

    fn ipv6s(text: &str) -> Vec<&str> {
        let bytes = text.as_bytes();
        let mut resume = 0;
        let mut found = Vec::new();
        for colon in memchr::memchr_iter(b':', bytes) {
            if colon < resume {
                continue;
            }
            let token = find_ipv6_around(bytes, colon);
            resume = token.end;
            if let Some(m) = token.address {
                found.push(&text[m]);
            }
        }
        found
    }

    #[test]
    fn finds_ipv4_addresses() {
        assert_eq!(ipv4s("host 192.168.1.10 up"), vec!["192.168.1.10"]);
        assert_eq!(ipv4s("10.0.0.1/24"), vec!["10.0.0.1/24"]);
        assert_eq!(ipv4s("at 8.8.8.8."), vec!["8.8.8.8"]);
        assert_eq!(
            ipv4s("255.255.255.255,0.0.0.0"),
            vec!["255.255.255.255", "0.0.0.0"]
        );
        assert_eq!(ipv4s("[172.16.0.5]:8080"), vec!["172.16.0.5"]);
    }

    #[test]
    fn ipv4_cidr_blocks_are_reported_whole() {
        for block in [
            "192.168.1.0/24",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "192.168.1.1/32",
        ] {
            assert_eq!(ipv4s(&format!("subnet {block}.")), vec![block], "{block}");
        }
        // Not a prefix length: the address alone.
        for (text, address) in [
            ("10.0.0.0/123", "10.0.0.0"),
            ("10.0.0.0/33", "10.0.0.0"),
            ("10.0.0.0/08", "10.0.0.0"),
            ("10.0.0.0/24.5", "10.0.0.0"),
            ("10.0.0.0/24/8", "10.0.0.0"),
            ("10.0.0.0/24x", "10.0.0.0"),
            ("10.0.0.0/", "10.0.0.0"),
        ] {
            assert_eq!(ipv4s(text), vec![address], "{text}");
        }
    }

    #[test]
    fn rejects_ipv4_lookalikes() {
        for text in [
            "1.2.3.4.5",
            "version 1.2.3.4.5 released",
            "v1.2.3.4",
            "256.1.1.1",
            "1.2.3.256",
            "01.2.3.4",
            "1.2.3",
            "2024.01.15.1",
            "1.2.3.4x",
            "3.14159",
        ] {
            assert!(ipv4s(text).is_empty(), "{text}: {:?}", ipv4s(text));
        }
    }

    #[test]
    fn finds_ipv6_addresses() {
        for addr in [
            "2001:db8::1",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "fe80::1",
            "::ffff:192.168.1.1",
            "2001:DB8:0:0:8:800:200C:417A",
            "::1",
            "2400:c401::5054:ff:fe1b:b031",
            "2001:db8::192.168.1.1",
        ] {
            assert_eq!(ipv6s(&format!("addr {addr}.")), vec![addr], "{addr}");
            assert_eq!(ipv6s(&format!("[{addr}]:443")), vec![addr], "{addr}");
        }
        assert_eq!(ipv6s("connecting from ::1"), vec!["::1"]);
    }

    #[test]
    fn ipv6_zones_and_prefixes_are_reported_whole() {
        for addr in [
            "fe80::1%eth0",
            "fe80::1%en0",
            "fe80::1%wlan0.100",
            "2001:db8::/32",
            "fe80::/10",
            "::1/128",
            "fe80::1%eth0/64",
            "2001:db8::%eth0/128",
            "::ffff:192.168.1.0/96",
        ] {
            assert_eq!(ipv6s(&format!("route {addr}.")), vec![addr], "{addr}");
            assert_eq!(ipv6s(&format!("({addr})")), vec![addr], "{addr}");
        }
        for (text, address) in [
            ("2001:db8::/9999", "2001:db8::"),
            ("2001:db8::/129", "2001:db8::"),
            ("fe80::1%", "fe80::1"),
            ("fe80::1%eth0_is_a_long_name", "fe80::1"),
            ("fe80::1%eth0/200", "fe80::1%eth0"),
        ] {
            assert_eq!(ipv6s(text), vec![address], "{text}");
        }
    }

    #[test]
    fn rejects_ipv6_lookalikes() {
        for text in [
            "std::fmt::Display",
            "use a::b; abc::def(); cafe::bad",
            "Foo::Bar::Baz",
            "10:30:00",
            "2024-01-15T10:30:00Z",
            "00:1A:2B:3C:4D:5E",
            "::",
            "a::1",
            "std::1",
            ":::1",
            "::1x",
            "MyClass::toString",
            "std::cout",
            "de:ad:be:ef",
            "xfe80::1",
            "2001:db8::1::2",
            "1:2:3:4:5:6:7:8:9",
            "http://example.com:8080/a",
            "{\"key\": 12}",
        ] {
            assert!(ipv6s(text).is_empty(), "{text}: {:?}", ipv6s(text));
        }
    }
}
