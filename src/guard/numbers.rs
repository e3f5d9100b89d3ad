//! The detectors fed by the digit-run pass, in one table, and the pass
//! itself: which digit runs are offered to which detector.
//!
//! Every number and id detector (cards, phones, IBANs, IPv4, national ids,
//! wallets, MAC addresses) decides at a digit run (see `digits.rs`): its
//! `find_at` gets the run and returns the match that starts at or around
//! it. A prompt has a digit run every 25 bytes or so, and most are `2024`
//! or `(30 s)`; calling 25 detectors on each would cost more than all the
//! rest of a scan. So each detector also declares its *shapes*: the run
//! lengths it can decide at, with the kinds of byte that can come just
//! before and just after such a run (a dashed SSN's first run has three
//! digits and a `-`, `.` or space after it; an Aadhaar group four digits
//! and a space, dash or colon). The pass looks up the detectors for each
//! run's (length, byte before, byte after) in a table built once per
//! scanner, and calls only those.
//!
//! Shapes only ever skip a detector that would have rejected the run: a
//! test runs every detector on every run and compares.

use std::ops::Range;

use super::digits::digit_runs;
use super::Builtin;
use super::{au_ids, card, crypto_wallet, es_ids, fi_hetu, iban, in_ids, ip};
use super::{it_fiscal_code, kr_rrn, mac_address, phone, pl_pesel, sg_nric, ssn, uk_ids, us_ids};

/// How a number detector decides a digit run: the match that starts at
/// (or around) it, if any.
pub(crate) type FindAt = fn(&[u8], Range<usize>) -> Option<Range<usize>>;
/// Where a detector holds a stream's end from (see `hold.rs`).
pub(crate) type HoldFrom = fn(&[u8]) -> usize;

/// A detector fed by the digit-run pass.
pub(crate) struct NumberDetector {
    pub(crate) builtin: Builtin,
    /// The runs it can decide a match at; see the module docs.
    shapes: &'static [Shape],
    pub(crate) find_at: FindAt,
    pub(crate) hold_from: HoldFrom,
    pub(crate) max_len: usize,
}

/// Digit runs of some lengths, with some kinds of byte before and after.
struct Shape {
    /// Bit `n`: a run of `n` digits (bit 63: 63 or more).
    lengths: u64,
    /// Bit per [`class`] of the byte before the run.
    before: u8,
    /// Bit per [`class`] of the byte after the run.
    after: u8,
}

/// Kinds of byte next to a run, one bit each. Digits never are: runs are
/// maximal.
const NONE: u8 = 1 << 0; // start or end of the text
const SPACE: u8 = 1 << 1;
const DASH: u8 = 1 << 2;
const DOT: u8 = 1 << 3;
const COLON: u8 = 1 << 4;
const UPPER: u8 = 1 << 5;
const LOWER: u8 = 1 << 6;
const OTHER: u8 = 1 << 7;
const ANY: u8 = u8::MAX;
const LETTER: u8 = UPPER | LOWER;
const NOT_LETTER: u8 = !LETTER;
/// What can border a token: nothing, a space, other punctuation.
const EDGE: u8 = NONE | SPACE | OTHER;

/// The class bit of `b`.
const fn class(b: u8) -> u8 {
    match b {
        b' ' => SPACE,
        b'-' => DASH,
        b'.' => DOT,
        b':' => COLON,
        b'A'..=b'Z' => UPPER,
        b'a'..=b'z' => LOWER,
        _ => OTHER,
    }
}

/// Class index (0–7) of every byte, for the table lookup.
const CLASS_INDEX: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = class(b as u8).trailing_zeros() as u8;
        b += 1;
    }
    table
};

/// Bits `from..=to` of a [`Shape::lengths`] mask.
const fn lengths(from: u32, to: u32) -> u64 {
    let mut mask = 0;
    let mut n = from;
    while n <= to {
        mask |= 1 << n;
        n += 1;
    }
    mask
}

const fn shape(lengths: u64, before: u8, after: u8) -> Shape {
    Shape {
        lengths,
        before,
        after,
    }
}

/// A bare number of `len` digits: a whole word.
const fn bare(len: u32) -> Shape {
    shape(lengths(len, len), NOT_LETTER, NOT_LETTER)
}

/// Every number detector, in the order each digit run is offered to them.
pub(crate) const NUMBER_DETECTORS: &[NumberDetector] = &[
    NumberDetector {
        builtin: Builtin::CreditCard,
        // A first group with more to come, or a whole card.
        shapes: &[
            shape(lengths(4, 19), NOT_LETTER, SPACE | DASH),
            shape(lengths(13, 19), NOT_LETTER, NOT_LETTER),
        ],
        find_at: card::find_at,
        hold_from: card::hold_from,
        max_len: card::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::Phone,
        // After `+` or `(` (OTHER) anything may follow; else a separator.
        shapes: &[
            shape(lengths(1, 15), OTHER, ANY),
            shape(lengths(1, 15), NOT_LETTER, SPACE | DASH | DOT),
        ],
        find_at: phone::find_at,
        hold_from: phone::hold_from,
        max_len: phone::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::UsSsn,
        shapes: &[
            shape(lengths(3, 3), NOT_LETTER, SPACE | DASH | DOT),
            bare(9),
        ],
        find_at: ssn::find_at,
        hold_from: ssn::hold_from,
        max_len: ssn::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::Ipv4,
        shapes: &[shape(lengths(1, 3), NOT_LETTER, DOT)],
        find_at: ip::find_ipv4_at,
        hold_from: ip::ipv4_hold_from,
        max_len: ip::IPV4_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::Iban,
        // The check digits and more, right after the country letters.
        shapes: &[shape(lengths(2, 32), LETTER, ANY)],
        find_at: iban::find_at,
        hold_from: iban::hold_from,
        max_len: iban::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::UsItin,
        shapes: &[
            shape(lengths(3, 3), NOT_LETTER, SPACE | DASH | DOT),
            bare(9),
        ],
        find_at: us_ids::find_itin_at,
        hold_from: us_ids::itin_hold_from,
        max_len: us_ids::ITIN_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::UsPassport,
        shapes: &[bare(9), shape(lengths(8, 8), UPPER, NOT_LETTER)],
        find_at: us_ids::find_passport_at,
        hold_from: us_ids::passport_hold_from,
        max_len: us_ids::PASSPORT_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::UsBankRouting,
        shapes: &[shape(lengths(4, 4), NOT_LETTER, DASH), bare(9)],
        find_at: us_ids::find_routing_at,
        hold_from: us_ids::routing_hold_from,
        max_len: us_ids::ROUTING_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::UkNhs,
        shapes: &[shape(lengths(3, 3), NOT_LETTER, SPACE | DASH), bare(10)],
        find_at: uk_ids::find_nhs_at,
        hold_from: uk_ids::nhs_hold_from,
        max_len: uk_ids::NHS_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::UkNino,
        // The first digits, after the prefix or a space after it.
        shapes: &[
            shape(lengths(2, 2) | lengths(4, 4), LETTER | SPACE, SPACE),
            shape(lengths(6, 6), LETTER | SPACE, LETTER | SPACE),
        ],
        find_at: uk_ids::find_nino_at,
        hold_from: uk_ids::nino_hold_from,
        max_len: uk_ids::NINO_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::EsNif,
        shapes: &[shape(lengths(7, 8), NOT_LETTER, UPPER | DASH)],
        find_at: es_ids::find_nif_at,
        hold_from: es_ids::nif_hold_from,
        max_len: es_ids::NIF_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::EsNie,
        shapes: &[shape(lengths(7, 7), UPPER | DASH, UPPER | DASH)],
        find_at: es_ids::find_nie_at,
        hold_from: es_ids::nie_hold_from,
        max_len: es_ids::NIE_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::ItFiscalCode,
        // The first digits of the code sit between letters.
        shapes: &[shape(lengths(1, 3), LETTER, LETTER)],
        find_at: it_fiscal_code::find_at,
        hold_from: it_fiscal_code::hold_from,
        max_len: it_fiscal_code::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::PlPesel,
        shapes: &[bare(11)],
        find_at: pl_pesel::find_at,
        hold_from: pl_pesel::hold_from,
        max_len: pl_pesel::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::FiHetu,
        // The date, then the century sign: `+`, `-` or a capital.
        shapes: &[shape(lengths(6, 6), NOT_LETTER, UPPER | DASH | OTHER)],
        find_at: fi_hetu::find_at,
        hold_from: fi_hetu::hold_from,
        max_len: fi_hetu::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::SgNric,
        shapes: &[shape(lengths(7, 7), UPPER, UPPER)],
        find_at: sg_nric::find_at,
        hold_from: sg_nric::hold_from,
        max_len: sg_nric::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::AuAbn,
        shapes: &[shape(lengths(2, 2), NOT_LETTER, SPACE), bare(11)],
        find_at: au_ids::find_abn_at,
        hold_from: au_ids::abn_hold_from,
        max_len: au_ids::ABN_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::AuAcn,
        shapes: &[shape(lengths(3, 3), NOT_LETTER, SPACE | DASH), bare(9)],
        find_at: au_ids::find_acn_at,
        hold_from: au_ids::acn_hold_from,
        max_len: au_ids::ACN_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::AuTfn,
        shapes: &[shape(lengths(3, 3), NOT_LETTER, SPACE | DASH), bare(9)],
        find_at: au_ids::find_tfn_at,
        hold_from: au_ids::tfn_hold_from,
        max_len: au_ids::TFN_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::AuMedicare,
        shapes: &[shape(lengths(4, 4), NOT_LETTER, SPACE | DASH), bare(10)],
        find_at: au_ids::find_medicare_at,
        hold_from: au_ids::medicare_hold_from,
        max_len: au_ids::MEDICARE_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::InPan,
        shapes: &[shape(lengths(4, 4), UPPER, UPPER)],
        find_at: in_ids::find_pan_at,
        hold_from: in_ids::pan_hold_from,
        max_len: in_ids::PAN_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::InAadhaar,
        shapes: &[
            shape(lengths(4, 4), NOT_LETTER, SPACE | DASH | COLON),
            bare(12),
        ],
        find_at: in_ids::find_aadhaar_at,
        hold_from: in_ids::aadhaar_hold_from,
        max_len: in_ids::AADHAAR_MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::KrRrn,
        shapes: &[shape(lengths(6, 6), NOT_LETTER, DASH), bare(13)],
        find_at: kr_rrn::find_at,
        hold_from: kr_rrn::hold_from,
        max_len: kr_rrn::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::CryptoWallet,
        // Base58 (`1…`, `3…`) and `0x…` start a word and go on with a
        // letter (or, Base58 only, are all digits); `bc1…` follows letters.
        shapes: &[
            shape(lengths(1, 63), NOT_LETTER, LETTER),
            shape(lengths(26, 35), NOT_LETTER, NOT_LETTER),
            shape(lengths(1, 63), LETTER, ANY),
        ],
        find_at: crypto_wallet::find_at,
        hold_from: crypto_wallet::hold_from,
        max_len: crypto_wallet::MAX_LEN,
    },
    NumberDetector {
        builtin: Builtin::MacAddress,
        // In a pair: two digits next to `:` or `-`, or one next to the
        // pair's letter. In a Cisco quad: next to a dot or the address's
        // edge on one side (runs between two letters never decide, see
        // `mac_address.rs`).
        shapes: &[
            shape(lengths(2, 2), COLON | DASH, NOT_LETTER),
            shape(lengths(2, 2), NOT_LETTER, COLON | DASH),
            shape(lengths(1, 1), LETTER, NOT_LETTER),
            shape(lengths(1, 1), NOT_LETTER, LETTER),
            shape(lengths(1, 4), DOT, LETTER | DOT | EDGE),
            shape(lengths(1, 4), LETTER, DOT | EDGE),
            shape(lengths(1, 4), EDGE, LETTER | DOT),
        ],
        find_at: mac_address::find_at,
        hold_from: mac_address::hold_from,
        max_len: mac_address::MAX_LEN,
    },
];

// Rows are bits of a `u32` in the dispatch table.
const _: () = assert!(NUMBER_DETECTORS.len() <= 32);

/// The row of `builtin` in [`NUMBER_DETECTORS`], if it has one.
pub(crate) fn row_of(builtin: Builtin) -> Option<usize> {
    NUMBER_DETECTORS.iter().position(|d| d.builtin == builtin)
}

/// Cells of the dispatch table: 64 length bits × 8 classes before × 8
/// classes after.
const CELLS: usize = 64 * 8 * 8;

/// For each (run length, class before, class after), the rows in use that
/// a run of that shape is offered to, as bits.
#[derive(Debug)]
pub(crate) struct Dispatch {
    cells: Box<[u32]>,
}

impl Dispatch {
    /// The table for the rows `in_use` says are used; `None` if none is.
    pub(crate) fn new(in_use: impl Fn(usize) -> bool) -> Option<Dispatch> {
        let mut cells = vec![0u32; CELLS].into_boxed_slice();
        let mut any = false;
        for (row, detector) in NUMBER_DETECTORS.iter().enumerate() {
            if !in_use(row) {
                continue;
            }
            any = true;
            for s in detector.shapes {
                for len in (0..64).filter(|len| s.lengths & (1 << len) != 0) {
                    for before in (0..8).filter(|c| s.before & (1 << c) != 0) {
                        for after in (0..8).filter(|c| s.after & (1 << c) != 0) {
                            cells[(len * 8 + before) * 8 + after] |= 1 << row;
                        }
                    }
                }
            }
        }
        any.then_some(Dispatch { cells })
    }

    /// Every match in `bytes` of the rows in use, in order of the runs
    /// they were decided at: each run is offered to each row its shape
    /// calls for, unless that row's last match already covers it.
    pub(crate) fn for_each_match(&self, bytes: &[u8], mut found: impl FnMut(usize, Range<usize>)) {
        let mut resume = [0usize; NUMBER_DETECTORS.len()];
        let class_at = |i: Option<usize>| match i.and_then(|i| bytes.get(i)) {
            Some(&b) => usize::from(CLASS_INDEX[usize::from(b)]),
            None => NONE.trailing_zeros() as usize,
        };
        for run in digit_runs(bytes) {
            let len = run.len().min(63);
            let before = class_at(run.start.checked_sub(1));
            let after = class_at(Some(run.end));
            let mut rows = self.cells[(len * 8 + before) * 8 + after];
            while rows != 0 {
                let row = rows.trailing_zeros() as usize;
                rows &= rows - 1;
                if run.start < resume[row] {
                    continue;
                }
                if let Some(m) = (NUMBER_DETECTORS[row].find_at)(bytes, run.clone()) {
                    resume[row] = m.end;
                    found(row, m);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the pass finds offering every run to every row.
    fn unfiltered(bytes: &[u8], row: usize) -> Vec<Range<usize>> {
        let mut resume = 0;
        let mut out = Vec::new();
        for run in digit_runs(bytes) {
            if run.start < resume {
                continue;
            }
            if let Some(m) = (NUMBER_DETECTORS[row].find_at)(bytes, run) {
                resume = m.end;
                out.push(m);
            }
        }
        out
    }

    const SAMPLES: &[&str] = &[
        "pay 4111 1111 1111 1111, 378282246310005 or 122000000000003.",
        "call +44 20 7946 0958, (415) 555-0132, 09-7625400 or +972-52-123-4567",
        "ssn 078-05-1121, 078 05 1123, 078.05.1123 and SSN: 078051121",
        "hosts 192.168.1.20, 10.0.0.0/8 and IBAN DE89 3704 0044 0532 0130 00 / GB82WEST12345698765432",
        "ITIN 911-70-1234 / itin 911701234, passport A12345678 and 912803456",
        "ABA routing 121000358 or 3222-7162-7, NHS 943 476 5919 and 9434765919",
        "NINO AB 12 34 56 C, AB123456C, PR 123612C, AB1234 56C, nino tw987654a",
        "DNI 12345678Z, 12345678-Z, dni 1111111-G, X9613851N, X-9613851-N, Y8063915-Z",
        "cf RSSMRA85T10A562S, rssmra85t10a562s and RSSMRA85T10A56NH",
        "PESEL 44051401359, HETU 131052-308T, 010594Y9032, hetu 311280-9200",
        "NRIC S1234567D, M5012345J; ABN 51 824 753 556, abn 51824753556",
        "ACN 004 085 616 acn 006249976 TFN 876 543 210 tfn 876543210",
        "Medicare 2123 45670 1, medicare 2123456701, PAN ABCPD1234Z",
        "Aadhaar 3123 4567 8909, aadhaar 312345678909, 3123-4567-8909, 3998:7654:3211",
        "RRN 960121-1021413, rrn 9601211021413, 960121-1234567",
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa 3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ",
        "eth 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "mac 00:1A:2B:3C:4D:5E, ab:cd:ef:01:23:45, aa-bb-cc-dd-ee-f0, 001a.2b3c.4d5e",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b uuid 123e4567-e89b-12d3-a456-426614174000",
        "v1.2.3 2024-01-15T10:30:00Z (30 s) x=250; 1,234,567 and 12 345 678 901",
    ];

    #[test]
    fn shapes_never_skip_a_run_a_detector_would_take() {
        let all = Dispatch::new(|_| true).expect("rows in use");
        // The samples, and every sample glued to the next at every
        // separator, so that runs meet unusual neighbours.
        let mut texts: Vec<String> = SAMPLES.iter().map(|s| s.to_string()).collect();
        for sep in ["", " ", "-", ".", ":", "_", "x", "X", "+", "("] {
            texts.push(SAMPLES.join(sep));
            texts.push(SAMPLES.join(sep).replace(' ', sep));
        }
        for text in &texts {
            assert_dispatch_is_unfiltered(&all, text);
        }
    }

    /// Every row's matches through the dispatch equal its unfiltered scan.
    fn assert_dispatch_is_unfiltered(all: &Dispatch, text: &str) {
        let bytes = text.as_bytes();
        let mut by_row = vec![Vec::new(); NUMBER_DETECTORS.len()];
        all.for_each_match(bytes, |row, m| by_row[row].push(m));
        for (row, found) in by_row.iter().enumerate() {
            let name = NUMBER_DETECTORS[row].builtin.name();
            assert_eq!(found, &unfiltered(bytes, row), "{name} in {text:?}");
        }
    }

    #[test]
    fn shapes_never_skip_a_run_in_random_mixes() {
        let all = Dispatch::new(|_| true).expect("rows in use");
        let tokens: Vec<&str> = SAMPLES.iter().flat_map(|s| s.split(' ')).collect();
        let joiners = [
            " ", "", "-", ".", ":", "x", "A", "_", "(", "+", "/", ",", "c",
        ];
        // splitmix64, for a fixed sequence of mixes.
        let mut state = 0x5EED_u64;
        let mut next = |n: usize| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % n as u64) as usize
        };
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..next(8) {
                text += tokens[next(tokens.len())];
                text += joiners[next(joiners.len())];
            }
            assert_dispatch_is_unfiltered(&all, &text);
        }
    }

    #[test]
    fn every_sample_kind_is_found() {
        let all = Dispatch::new(|_| true).expect("rows in use");
        let mut seen = vec![false; NUMBER_DETECTORS.len()];
        for text in SAMPLES {
            all.for_each_match(text.as_bytes(), |row, _| seen[row] = true);
        }
        for (row, seen) in seen.iter().enumerate() {
            assert!(seen, "{} never found", NUMBER_DETECTORS[row].builtin.name());
        }
    }

    #[test]
    fn every_builtin_but_four_has_a_row() {
        for &builtin in Builtin::ALL {
            let expected = !matches!(
                builtin,
                Builtin::Email | Builtin::Ipv6 | Builtin::Secrets | Builtin::IpAddress
            );
            assert_eq!(row_of(builtin).is_some(), expected, "{}", builtin.name());
        }
    }

    #[test]
    fn no_rows_in_use_means_no_table() {
        assert!(Dispatch::new(|_| false).is_none());
        let only_cards = Dispatch::new(|row| row == 0).expect("cards");
        let mut found = Vec::new();
        only_cards.for_each_match(b"4111 1111 1111 1111 and 078-05-1121", |row, m| {
            found.push((row, m))
        });
        assert_eq!(found, vec![(0, 0..19)]);
    }
}
