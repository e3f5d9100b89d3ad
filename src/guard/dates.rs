//! Calendar checks for the ids that embed a date of birth (PESEL, HETU,
//! Korean RRN): a number whose "date" is 31 February is no such id.

/// Is `year`-`month`-`day` a date of the Gregorian calendar?
pub(crate) fn is_valid_date(year: u32, month: u32, day: u32) -> bool {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_month_lengths_and_leap_years() {
        assert!(is_valid_date(2024, 2, 29));
        assert!(!is_valid_date(2023, 2, 29));
        assert!(!is_valid_date(1900, 2, 29));
        assert!(is_valid_date(2000, 2, 29));
        assert!(!is_valid_date(2024, 4, 31));
        assert!(!is_valid_date(2024, 13, 1));
        assert!(!is_valid_date(2024, 1, 0));
        assert!(is_valid_date(1999, 12, 31));
    }
}
