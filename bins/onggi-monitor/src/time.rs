//! RFC 3339 timestamps in UTC with nanoseconds (`2026-11-22T15:04:13.280685984Z`, the
//! form Docker writes), computed from the Unix time without a date library.
//!
//! The calendar conversion is Howard Hinnant's `civil_from_days`
//! (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>): the
//! proleptic Gregorian calendar, counted in 400-year eras that start on March 1st so
//! that the leap day is the last day of the year.

use crate::sys::Time;

/// Seconds of 0000-01-01T00:00:00Z, the earliest time with a four-digit year.
const MIN_SECS: i64 = -62_167_219_200;
/// Seconds of 9999-12-31T23:59:59Z, the latest.
const MAX_SECS: i64 = 253_402_300_799;

/// The civil date `(year, month 1-12, day 1-31)` of day `z` counted from 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A formatted timestamp: exactly 30 bytes, `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339([u8; 30]);

impl Rfc3339 {
    /// Format `t` (Unix time). Times outside years 0000-9999 are clamped to them.
    pub fn new(t: Time) -> Self {
        let secs = t.secs.clamp(MIN_SECS, MAX_SECS);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400) as u32;
        let mut s = *b"0000-00-00T00:00:00.000000000Z";
        put_digits(&mut s[0..4], year as u32);
        put_digits(&mut s[5..7], month);
        put_digits(&mut s[8..10], day);
        put_digits(&mut s[11..13], sod / 3600);
        put_digits(&mut s[14..16], sod / 60 % 60);
        put_digits(&mut s[17..19], sod % 60);
        put_digits(&mut s[20..29], t.nanos.min(999_999_999));
        Rfc3339(s)
    }

    /// The 30 bytes.
    pub fn as_bytes(&self) -> &[u8; 30] {
        &self.0
    }
}

/// Write `n` as decimal, zero-padded to fill `out`.
fn put_digits(out: &mut [u8], mut n: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse conversion (Hinnant's `days_from_civil`), to check the forward one.
    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(m);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn is_leap(y: i64) -> bool {
        y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
    }

    fn fmt(secs: i64, nanos: u32) -> String {
        String::from_utf8(Rfc3339::new(Time { secs, nanos }).as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(47_482), (2100, 1, 1));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }

    #[test]
    fn every_day_from_1600_to_2400_is_consecutive() {
        let mut z = days_from_civil(1600, 1, 1);
        for y in 1600..2400 {
            for m in 1..=12u32 {
                let len = match m {
                    2 if is_leap(y) => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                for d in 1..=len {
                    assert_eq!(civil_from_days(z), (y, m, d), "day {z}");
                    assert_eq!(days_from_civil(y, m, d), z);
                    z += 1;
                }
            }
        }
    }

    #[test]
    fn formats_like_docker() {
        assert_eq!(fmt(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            fmt(1_795_359_853, 280_685_984),
            "2026-11-22T15:04:13.280685984Z"
        );
        assert_eq!(
            fmt(951_782_399, 999_999_999),
            "2000-02-28T23:59:59.999999999Z"
        );
        assert_eq!(fmt(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(fmt(-1, 0), "1969-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn clamps_to_four_digit_years() {
        assert_eq!(fmt(i64::MIN, 0), "0000-01-01T00:00:00.000000000Z");
        assert_eq!(fmt(i64::MAX, 0), "9999-12-31T23:59:59.000000000Z");
    }
}
