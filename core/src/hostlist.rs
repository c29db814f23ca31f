//! Hostlist ranges, the way operators of the older board manager name many boards at once:
//! `esp8266-0[08-11],wipy2-[1,3,7]` means esp8266-008 to esp8266-011 plus wipy2-1, wipy2-3 and
//! wipy2-7. [`expand`] turns such a string into the list of names; [`compress`] turns a list of
//! names back into a short hostlist string.
//!
//! The syntax:
//!
//! - Top-level commas separate name patterns (`a,b`); commas inside brackets do not.
//!   Whitespace around a pattern, and around an item inside brackets, is ignored.
//! - A pattern is text with any number of bracket groups: `rack[1-2]-b[1-2]` is the cartesian
//!   product in order (rack1-b1, rack1-b2, rack2-b1, rack2-b2). A pattern without brackets is a
//!   plain name.
//! - A group holds a comma-separated list of numbers (`7`) and ranges (`1-3`): `[1-3,7,09-10]`.
//! - A range is zero-padded to the width of its start as written: `[08-11]` gives 08, 09, 10, 11;
//!   `[1-10]` gives 1 to 10 without padding; a single number is kept as written (`[07]` gives 07).
//! - Names are de-duplicated, keeping the order in which they first appear.
//! - At most [`MAX_NAMES`] names: `[1-99999999]` is refused before anything is built.
//!
//! Errors name the problem and the column (counted in characters from 1) where it is.
//!
//! ```
//! use roost_core::hostlist::{compress, expand};
//!
//! let names = expand("esp8266-0[08-11],wipy2-[1,3,7]").unwrap();
//! assert_eq!(
//!     names,
//!     ["esp8266-008", "esp8266-009", "esp8266-010", "esp8266-011", "wipy2-1", "wipy2-3", "wipy2-7"]
//! );
//! assert_eq!(compress(&names).unwrap(), "esp8266-[008-011],wipy2-[1,3,7]");
//! ```

use std::collections::{BTreeMap, HashSet};

use thiserror::Error;

/// The most names one hostlist may expand to.
pub const MAX_NAMES: usize = 100_000;

/// Numbers in a hostlist hold at most this many digits (the width of `u64::MAX`).
const MAX_DIGITS: usize = 20;

/// Why a hostlist string cannot be expanded, or a name cannot be put into one.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostlistError {
    #[error("empty name at column {column}")]
    EmptyName { column: usize },
    #[error("unclosed '[' at column {column}")]
    Unclosed { column: usize },
    #[error("unexpected ']' at column {column}: no '[' is open")]
    UnexpectedClose { column: usize },
    #[error("nested '[' at column {column}: brackets do not nest")]
    Nested { column: usize },
    #[error("empty range at column {column}")]
    EmptyRange { column: usize },
    #[error("not a number: {text:?} at column {column}")]
    NotANumber { text: String, column: usize },
    #[error("number {text} at column {column} is too large (at most {max})", max = u64::MAX)]
    NumberTooLarge { text: String, column: usize },
    #[error("range {start}-{end} goes backwards at column {column}")]
    Backwards { start: String, end: String, column: usize },
    #[error("hostlist expands to more than {MAX_NAMES} names")]
    TooManyNames,
    #[error(
        "name {name:?} cannot be written in a hostlist: it is empty, has whitespace at either end, \
         or holds '[', ']' or ','"
    )]
    Unrepresentable { name: String },
}

/// One item of a bracket group: the numbers `start..=end`, zero-padded to `width` digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    start: u64,
    end: u64,
    width: usize,
}

impl Item {
    fn len(&self) -> u64 {
        (self.end - self.start).saturating_add(1)
    }
}

/// A piece of a name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Group(Vec<Item>),
}

/// Expands a hostlist string into the names it stands for, without duplicates, in the order
/// they first appear.
pub fn expand(hostlist: &str) -> Result<Vec<String>, HostlistError> {
    let patterns = parse(hostlist)?;
    let mut total: u64 = 0;
    for segments in &patterns {
        total = total.checked_add(pattern_size(segments)?).ok_or(HostlistError::TooManyNames)?;
        if total > MAX_NAMES as u64 {
            return Err(HostlistError::TooManyNames);
        }
    }
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for segments in &patterns {
        for name in expand_pattern(segments) {
            if seen.insert(name.clone()) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// Compresses names into a short hostlist string that [`expand`]s to the same set of names.
///
/// Names are grouped by the text before and after their last run of digits; the numbers of a
/// group become ranges, keeping their zero padding (`n-08`, `n-09`, `n-10` -> `n-[08-10]`).
/// Groups come out in the order their first name appears, and numbers in ascending order.
/// Duplicates are dropped; no names give the empty string (which [`expand`] refuses).
/// A name that [`expand`] could never produce (empty, with whitespace
/// at either end, or holding `[`, `]` or `,`) is an error.
pub fn compress<S: AsRef<str>>(names: &[S]) -> Result<String, HostlistError> {
    // Families in first-seen order: (prefix, suffix, has a number) -> numbers as written.
    let mut order: Vec<(String, String, bool)> = Vec::new();
    let mut families: BTreeMap<(String, String, bool), Vec<Digits>> = BTreeMap::new();
    for name in names {
        let name = name.as_ref();
        if name.is_empty() || name.trim() != name || name.contains(['[', ']', ',']) {
            return Err(HostlistError::Unrepresentable { name: name.to_owned() });
        }
        let (prefix, digits, suffix) = split_last_number(name);
        let key = (prefix.to_owned(), suffix.to_owned(), digits.is_some());
        let entry = families.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Vec::new()
        });
        if let Some(digits) = digits {
            let d = Digits::new(digits);
            if !entry.contains(&d) {
                entry.push(d);
            }
        }
    }
    let mut parts = Vec::with_capacity(order.len());
    for key in order {
        let (prefix, suffix, _) = &key;
        let numbers = &families[&key];
        if numbers.is_empty() {
            // A name without digits stands for itself.
            parts.push(format!("{prefix}{suffix}"));
        } else if let [only] = numbers.as_slice() {
            parts.push(format!("{prefix}{}{suffix}", only.text));
        } else {
            let items = number_items(numbers);
            parts.push(format!("{prefix}[{}]{suffix}", items.join(",")));
        }
    }
    Ok(parts.join(","))
}

/// A number as written in a name: its value and its digits.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Digits {
    value: u64,
    text: String,
}

impl Digits {
    fn new(text: &str) -> Self {
        // `split_last_number` only returns runs that fit in a u64.
        Digits { value: text.parse().unwrap_or(0), text: text.to_owned() }
    }

    /// Written with leading zeros (`08`), so only a range of exactly this width reproduces it.
    fn padded(&self) -> bool {
        self.text.len() > 1 && self.text.starts_with('0')
    }
}

/// Splits a name around its last run of ASCII digits, when that run fits in a `u64`.
fn split_last_number(name: &str) -> (&str, Option<&str>, &str) {
    let bytes = name.as_bytes();
    let Some(last) = bytes.iter().rposition(u8::is_ascii_digit) else {
        return (name, None, "");
    };
    let first = bytes[..last].iter().rposition(|b| !b.is_ascii_digit()).map_or(0, |i| i + 1);
    let digits = &name[first..=last];
    if digits.len() > MAX_DIGITS || digits.parse::<u64>().is_err() {
        return (name, None, "");
    }
    (&name[..first], Some(digits), &name[last + 1..])
}

/// Bracket items (`08-11`, `7`) covering exactly the given numbers of one family.
fn number_items(numbers: &[Digits]) -> Vec<String> {
    // A run zero-padded to width w reproduces a number written with leading zeros in w digits,
    // and a number written without them in exactly w digits. So numbers are classed by width
    // where padding is involved; the other numbers form runs of their own, which need no padding.
    let padded_widths: HashSet<usize> = numbers.iter().filter(|d| d.padded()).map(|d| d.text.len()).collect();
    let mut classes: BTreeMap<usize, Vec<u64>> = BTreeMap::new(); // width (0: unpadded) -> values
    for d in numbers {
        let width = if d.padded() || padded_widths.contains(&d.text.len()) { d.text.len() } else { 0 };
        classes.entry(width).or_default().push(d.value);
    }
    let mut runs: Vec<(u64, u64, usize)> = Vec::new();
    for (width, mut values) in classes {
        values.sort_unstable();
        values.dedup();
        let mut iter = values.into_iter();
        let Some(mut start) = iter.next() else { continue };
        let mut end = start;
        for v in iter {
            if v == end + 1 {
                end = v;
            } else {
                runs.push((start, end, width));
                start = v;
                end = v;
            }
        }
        runs.push((start, end, width));
    }
    runs.sort_unstable();
    runs.into_iter()
        .map(
            |(start, end, width)| {
                if start == end {
                    format!("{start:0width$}")
                } else {
                    format!("{start:0width$}-{end:0width$}")
                }
            },
        )
        .collect()
}

/// How many names one pattern expands to (before de-duplication), refusing more than the cap.
fn pattern_size(segments: &[Segment]) -> Result<u64, HostlistError> {
    let mut size: u64 = 1;
    for segment in segments {
        if let Segment::Group(items) = segment {
            let mut group: u64 = 0;
            for item in items {
                group = group.checked_add(item.len()).ok_or(HostlistError::TooManyNames)?;
            }
            size = size.checked_mul(group).ok_or(HostlistError::TooManyNames)?;
            if size > MAX_NAMES as u64 {
                return Err(HostlistError::TooManyNames);
            }
        }
    }
    Ok(size)
}

/// The names of one pattern, leftmost group varying slowest.
fn expand_pattern(segments: &[Segment]) -> Vec<String> {
    let mut names = vec![String::new()];
    for segment in segments {
        match segment {
            Segment::Text(text) => names.iter_mut().for_each(|n| n.push_str(text)),
            Segment::Group(items) => {
                let mut next = Vec::new();
                for name in &names {
                    for item in items {
                        for v in item.start..=item.end {
                            next.push(format!("{name}{v:0width$}", width = item.width));
                        }
                    }
                }
                names = next;
            }
        }
    }
    names
}

/// Parses a hostlist into its name patterns.
fn parse(input: &str) -> Result<Vec<Vec<Segment>>, HostlistError> {
    let column = |byte: usize| input[..byte].chars().count() + 1;
    // Split at top-level commas, checking brackets on the way.
    let mut pieces: Vec<(usize, usize)> = Vec::new(); // byte ranges of the patterns
    let mut open: Option<usize> = None;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '[' if open.is_some() => return Err(HostlistError::Nested { column: column(i) }),
            '[' => open = Some(i),
            ']' if open.is_none() => return Err(HostlistError::UnexpectedClose { column: column(i) }),
            ']' => open = None,
            ',' if open.is_none() => {
                pieces.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    if let Some(i) = open {
        return Err(HostlistError::Unclosed { column: column(i) });
    }
    pieces.push((start, input.len()));

    let mut patterns = Vec::with_capacity(pieces.len());
    for (from, to) in pieces {
        let (from, to) = trim_range(input, from, to);
        if from == to {
            return Err(HostlistError::EmptyName { column: column(from) });
        }
        patterns.push(parse_pattern(input, from, to, &column)?);
    }
    Ok(patterns)
}

/// Parses one pattern, `input[from..to]`, whose brackets are known to be balanced and flat.
fn parse_pattern(
    input: &str,
    from: usize,
    to: usize,
    column: &dyn Fn(usize) -> usize,
) -> Result<Vec<Segment>, HostlistError> {
    let mut segments = Vec::new();
    let mut pos = from;
    while pos < to {
        let rest = &input[pos..to];
        match rest.find('[') {
            Some(0) => {
                let close = pos + rest.find(']').unwrap_or(rest.len());
                segments.push(Segment::Group(parse_group(input, pos + 1, close, column)?));
                pos = close + 1;
            }
            Some(n) => {
                segments.push(Segment::Text(rest[..n].to_owned()));
                pos += n;
            }
            None => {
                segments.push(Segment::Text(rest.to_owned()));
                pos = to;
            }
        }
    }
    Ok(segments)
}

/// Parses the inside of a bracket group, `input[from..to]`.
fn parse_group(
    input: &str,
    from: usize,
    to: usize,
    column: &dyn Fn(usize) -> usize,
) -> Result<Vec<Item>, HostlistError> {
    let mut items = Vec::new();
    let mut item_start = from;
    loop {
        let item_end = input[item_start..to].find(',').map_or(to, |n| item_start + n);
        let (a, b) = trim_range(input, item_start, item_end);
        if a == b {
            return Err(HostlistError::EmptyRange { column: column(a) });
        }
        let text = &input[a..b];
        let item = match text.find('-') {
            None => {
                let value = parse_number(text, a, column)?;
                Item { start: value, end: value, width: text.len() }
            }
            Some(dash) => {
                let (sa, sb) = trim_range(input, a, a + dash);
                let (ea, eb) = trim_range(input, a + dash + 1, b);
                if sa == sb || ea == eb {
                    return Err(HostlistError::EmptyRange { column: column(a) });
                }
                let start = parse_number(&input[sa..sb], sa, column)?;
                let end = parse_number(&input[ea..eb], ea, column)?;
                if end < start {
                    return Err(HostlistError::Backwards {
                        start: input[sa..sb].to_owned(),
                        end: input[ea..eb].to_owned(),
                        column: column(a),
                    });
                }
                Item { start, end, width: sb - sa }
            }
        };
        items.push(item);
        if item_end == to {
            return Ok(items);
        }
        item_start = item_end + 1;
    }
}

fn parse_number(text: &str, at: usize, column: &dyn Fn(usize) -> usize) -> Result<u64, HostlistError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostlistError::NotANumber { text: text.to_owned(), column: column(at) });
    }
    if text.len() > MAX_DIGITS {
        return Err(HostlistError::NumberTooLarge { text: text.to_owned(), column: column(at) });
    }
    text.parse().map_err(|_| HostlistError::NumberTooLarge { text: text.to_owned(), column: column(at) })
}

/// `from..to` with whitespace at both ends left out.
fn trim_range(input: &str, from: usize, to: usize) -> (usize, usize) {
    let s = &input[from..to];
    let start = from + (s.len() - s.trim_start().len());
    let end = to - (s.len() - s.trim_end().len());
    (start, end.max(start))
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
