//! Number plate text: normalisation, Ukrainian formats, voting across a track's reads,
//! and matching with OCR confusions (ANPR/LPR).
//!
//! The twelve letters of Ukrainian plates (А В Е І К М Н О Р С Т Х, ДСТУ 4278:2019)
//! each have a Latin twin of the same shape (A B E I K M H O P C T X), so plates are
//! read in Latin, stored in Latin ([`normalise`]: the form searched and matched) and
//! shown in Cyrillic ([`display`]) when the text is a Ukrainian format. Foreign plates
//! are kept as read.

use std::collections::HashMap;

/// Latin letters with a Cyrillic twin on Ukrainian plates, and the twin.
const TWINS: [(char, char); 12] = [
    ('A', 'А'),
    ('B', 'В'),
    ('E', 'Е'),
    ('I', 'І'),
    ('K', 'К'),
    ('M', 'М'),
    ('H', 'Н'),
    ('O', 'О'),
    ('P', 'Р'),
    ('C', 'С'),
    ('T', 'Т'),
    ('X', 'Х'),
];

/// Characters OCR mistakes for one another on plates (same shape in the plate font),
/// as unordered pairs.
pub const CONFUSIONS: [(char, char); 10] = [
    ('0', 'O'),
    ('0', 'D'),
    ('O', 'D'),
    ('8', 'B'),
    ('1', 'I'),
    ('5', 'S'),
    ('2', 'Z'),
    ('6', 'G'),
    ('7', 'T'),
    ('4', 'A'),
];

/// Regions of the 2004 civil series (first two letters), in Latin.
const REGIONS_2004: [(&str, &str); 27] = [
    ("AA", "Kyiv"),
    ("AB", "Vinnytsia"),
    ("AC", "Volyn"),
    ("AE", "Dnipropetrovsk"),
    ("AH", "Donetsk"),
    ("AI", "Kyiv Oblast"),
    ("AK", "Crimea"),
    ("AM", "Zhytomyr"),
    ("AO", "Zakarpattia"),
    ("AP", "Zaporizhzhia"),
    ("AT", "Ivano-Frankivsk"),
    ("AX", "Kharkiv"),
    ("BA", "Kirovohrad"),
    ("BB", "Luhansk"),
    ("BC", "Lviv"),
    ("BE", "Mykolaiv"),
    ("BH", "Odesa"),
    ("BI", "Poltava"),
    ("BK", "Rivne"),
    ("BM", "Sumy"),
    ("BO", "Ternopil"),
    ("BT", "Kherson"),
    ("BX", "Khmelnytskyi"),
    ("CA", "Cherkasy"),
    ("CB", "Chernihiv"),
    ("CE", "Chernivtsi"),
    ("CH", "Sevastopol"),
];

/// The Latin twin of a plate letter written in Cyrillic, or the character itself.
fn latin(c: char) -> char {
    TWINS.iter().find(|(_, cy)| *cy == c).map_or(c, |(l, _)| *l)
}

/// Whether `c` is one of the twelve letters of Ukrainian plates (Latin form).
pub fn is_plate_letter(c: char) -> bool {
    TWINS.iter().any(|(l, _)| *l == c)
}

/// The form stored, searched and matched: upper case, Cyrillic plate letters turned
/// into their Latin twins, everything but letters and digits dropped (`"аа 1234-вв"`
/// → `"AA1234BB"`). Foreign letters (`Ä`, `Ж`) are kept, upper-cased.
pub fn normalise(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_uppercase).map(latin).collect()
}

/// A plate format, recognised from the normalised text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateFormat {
    /// Ukrainian civil plate since 2004: two letters (region), four digits, two
    /// letters (series), all letters of the twelve: `AA 1234 BB`.
    UaCivil,
    /// Ukrainian plate of the pre-2004 civil pattern still met on old vehicles: five
    /// digits and two letters, `12345 AA`.
    UaCivil1995,
    /// Not a Ukrainian format this module knows: a foreign plate, a personalised one,
    /// or a misread. Kept as read.
    Other,
}

impl PlateFormat {
    /// Lower-case name (API, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            PlateFormat::UaCivil => "ua_civil",
            PlateFormat::UaCivil1995 => "ua_civil_1995",
            PlateFormat::Other => "other",
        }
    }

    /// Whether this is a Ukrainian format (shown in Cyrillic).
    pub fn is_ukrainian(self) -> bool {
        self != PlateFormat::Other
    }
}

/// The format of a normalised plate text.
pub fn format_of(norm: &str) -> PlateFormat {
    let c: Vec<char> = norm.chars().collect();
    let letters = |s: &[char]| s.iter().all(|&ch| is_plate_letter(ch));
    let digits = |s: &[char]| s.iter().all(|ch| ch.is_ascii_digit());
    match c.len() {
        8 if letters(&c[..2]) && digits(&c[2..6]) && letters(&c[6..]) => PlateFormat::UaCivil,
        7 if digits(&c[..5]) && letters(&c[5..]) => PlateFormat::UaCivil1995,
        _ => PlateFormat::Other,
    }
}

/// Whether a normalised text read on an image could be a number plate: a Ukrainian
/// format, or 4–10 characters with both letters and digits (most plates of Europe).
/// Text on shop signs, logos and clocks is mostly not.
pub fn is_plate_like(norm: &str) -> bool {
    let n = norm.chars().count();
    format_of(norm).is_ukrainian()
        || ((4..=10).contains(&n)
            && norm.chars().any(|c| c.is_ascii_digit())
            && norm.chars().any(char::is_alphabetic)
            && norm.chars().all(char::is_alphanumeric))
}

/// The region of a civil plate's first two letters (2004 codes), if known.
pub fn region(norm: &str) -> Option<&'static str> {
    if format_of(norm) != PlateFormat::UaCivil {
        return None;
    }
    REGIONS_2004.iter().find(|(code, _)| norm.starts_with(code)).map(|(_, r)| *r)
}

/// The text shown to operators: a Ukrainian format in Cyrillic letters, grouped as
/// on the plate (`"AA1234BB"` → `"АА 1234 ВВ"`); anything else as normalised.
pub fn display(norm: &str) -> String {
    let cyr = |s: &str| -> String {
        s.chars().map(|c| TWINS.iter().find(|(l, _)| *l == c).map_or(c, |(_, cy)| *cy)).collect()
    };
    match format_of(norm) {
        PlateFormat::UaCivil => format!("{} {} {}", cyr(&norm[..2]), &norm[2..6], cyr(&norm[6..])),
        PlateFormat::UaCivil1995 => format!("{} {}", &norm[..5], cyr(&norm[5..])),
        PlateFormat::Other => norm.to_owned(),
    }
}

/// The Ukrainian plate in `norm` (normalised text as read), with characters of the
/// wrong kind for their place swapped for their OCR confusion: `AX12З4BI` read as
/// `AX1234B1` becomes `AX1234BI`, `0X1234BI` becomes `OX1234BI` (a letter's place) and
/// `AXI234BI` becomes `AX1234BI` (a digit's place). The text may hold more than the
/// plate (the strip's `UA`, a frame edge read as `I`): the first window of 8 (then 7)
/// characters that fits a Ukrainian format is taken. `None` when no window fits.
pub fn fit_format(norm: &str) -> Option<String> {
    let c: Vec<char> = norm.chars().collect();
    // Letter places of the civil (2 + 4 + 2) and 1995 (5 + 2) formats.
    let civil = |i: usize| !(2..6).contains(&i);
    let old = |i: usize| i >= 5;
    for (len, letter_at) in [(8usize, &civil as &dyn Fn(usize) -> bool), (7, &old)] {
        for start in 0..=c.len().saturating_sub(len) {
            let Some(window) = c.get(start..start + len) else { continue };
            let fitted: Option<String> = window
                .iter()
                .enumerate()
                .map(|(i, &ch)| {
                    let want = |x: char| if letter_at(i) { is_plate_letter(x) } else { x.is_ascii_digit() };
                    if want(ch) {
                        Some(ch)
                    } else {
                        CONFUSIONS
                            .iter()
                            .filter_map(|&(a, b)| {
                                if a == ch {
                                    Some(b)
                                } else if b == ch {
                                    Some(a)
                                } else {
                                    None
                                }
                            })
                            .find(|&x| want(x))
                    }
                })
                .collect();
            if let Some(f) = fitted.filter(|f| format_of(f).is_ukrainian()) {
                return Some(f);
            }
        }
    }
    None
}

/// The plate text to keep from one line read by OCR (normalised): the Ukrainian plate
/// it holds ([`fit_format`]), else the line itself when it could be a foreign plate
/// ([`is_plate_like`]), else `None` (a sign, a clock, a word).
pub fn plate_text(norm: &str) -> Option<String> {
    fit_format(norm).or_else(|| is_plate_like(norm).then(|| norm.to_owned()))
}

/// Whether OCR confuses `a` and `b` (same shape on a plate).
pub fn confusable(a: char, b: char) -> bool {
    a == b || CONFUSIONS.iter().any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b))
}

/// How a read matches a listed plate, both normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// The same text.
    Exact,
    /// The same length and one character differing by an OCR confusion (0/O, 8/B …).
    Confusion,
}

/// Whether `read` matches the listed plate `listed` exactly or within one OCR
/// confusion; both normalised ([`normalise`]).
pub fn matches(read: &str, listed: &str) -> Option<Match> {
    if read == listed {
        return Some(Match::Exact);
    }
    let (r, l): (Vec<char>, Vec<char>) = (read.chars().collect(), listed.chars().collect());
    if r.len() != l.len() || r.is_empty() {
        return None;
    }
    let mut differing = r.iter().zip(&l).filter(|(a, b)| a != b);
    match (differing.next(), differing.next()) {
        (Some((&a, &b)), None) if confusable(a, b) => Some(Match::Confusion),
        _ => None,
    }
}

/// One plate read of a track: normalised text and the reader's confidence (0–1).
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    /// Normalised text ([`normalise`]).
    pub text: String,
    /// Reader confidence, 0–1.
    pub confidence: f64,
}

/// A track's plate after voting: the text and its confidence, 0–1: the mean over
/// characters of the winning character's share of the votes, times the share of the
/// votes cast for the winning length, times the mean confidence of the reads of that
/// length.
#[derive(Clone, Debug, PartialEq)]
pub struct Voted {
    /// Normalised text.
    pub text: String,
    /// Confidence, 0–1.
    pub confidence: f64,
    /// Reads that voted (those of the winning length).
    pub reads: usize,
}

/// Votes across a track's reads, character by character, weighted by confidence.
///
/// The length is voted first (the reads of the length with the most confidence);
/// then, at each position, the character with the most confidence among those reads.
/// A read in a Ukrainian format weighs double: a misread rarely keeps the format.
/// `None` for no read with text.
pub fn vote(reads: &[Read]) -> Option<Voted> {
    let weight = |r: &Read| r.confidence.max(0.0) * if format_of(&r.text).is_ukrainian() { 2.0 } else { 1.0 };
    let mut by_len: HashMap<usize, f64> = HashMap::new();
    let mut total = 0.0;
    for r in reads.iter().filter(|r| !r.text.is_empty()) {
        *by_len.entry(r.text.chars().count()).or_default() += weight(r);
        total += weight(r);
    }
    let (&len, &len_weight) = by_len.iter().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))?;
    let voters: Vec<(Vec<char>, f64, f64)> = reads
        .iter()
        .filter(|r| r.text.chars().count() == len)
        .map(|r| (r.text.chars().collect(), weight(r), r.confidence.clamp(0.0, 1.0)))
        .collect();
    let mut text = String::with_capacity(len);
    let mut shares = 0.0;
    for i in 0..len {
        let mut score: Vec<(char, f64)> = Vec::new();
        for (chars, w, _) in &voters {
            match score.iter_mut().find(|(c, _)| *c == chars[i]) {
                Some((_, s)) => *s += w,
                None => score.push((chars[i], *w)),
            }
        }
        let sum: f64 = score.iter().map(|(_, s)| s).sum();
        let (c, s) = score.into_iter().max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))?;
        text.push(c);
        shares += if sum > 0.0 { s / sum } else { 0.0 };
    }
    let agreement = shares / len.max(1) as f64;
    let mean_conf = voters.iter().map(|(_, _, c)| c).sum::<f64>() / voters.len() as f64;
    let length_share = if total > 0.0 { len_weight / total } else { 0.0 };
    Some(Voted { text, confidence: agreement * length_share * mean_conf, reads: voters.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, confidence: f64) -> Read {
        Read { text: normalise(text), confidence }
    }

    #[test]
    fn normalisation_turns_cyrillic_twins_into_latin_and_drops_separators() {
        assert_eq!(normalise("АА 1234 ВВ"), "AA1234BB");
        assert_eq!(normalise("ax-0001-ki"), "AX0001KI");
        assert_eq!(normalise(" ві 7777 ст "), "BI7777CT");
        assert_eq!(normalise("B 123 XY"), "B123XY", "a foreign plate, kept");
        assert_eq!(normalise("Ж123"), "Ж123", "a letter with no Latin twin, kept");
    }

    #[test]
    fn formats_and_regions() {
        assert_eq!(format_of("AX1234BI"), PlateFormat::UaCivil);
        assert_eq!(region("AX1234BI"), Some("Kharkiv"));
        assert_eq!(region("BI0001AA"), Some("Poltava"));
        assert_eq!(region("KA1234AA"), None, "a valid civil plate of a code not in the 2004 list");
        assert_eq!(format_of("KA1234AA"), PlateFormat::UaCivil);
        assert_eq!(format_of("12345AA"), PlateFormat::UaCivil1995);
        assert_eq!(format_of("AD1234BB"), PlateFormat::Other, "D is not a plate letter");
        assert_eq!(format_of("AA123BB"), PlateFormat::Other);
        assert_eq!(format_of("B123XY"), PlateFormat::Other);
    }

    #[test]
    fn plate_like_texts() {
        assert!(is_plate_like("AX1234BI"));
        assert!(is_plate_like("B123XY"), "a German-style plate");
        assert!(!is_plate_like("STOP"), "no digit");
        assert!(!is_plate_like("1234"), "no letter");
        assert!(!is_plate_like("A1"), "too short");
        assert!(!is_plate_like("ABCDEFGHIJ12"), "too long");
    }

    #[test]
    fn ukrainian_plates_are_shown_in_cyrillic_and_foreign_ones_as_read() {
        assert_eq!(display("AA1234BB"), "АА 1234 ВВ");
        assert_eq!(display("12345AX"), "12345 АХ");
        assert_eq!(display("B123XY"), "B123XY");
        // Round trip: what an operator types back finds the stored form.
        assert_eq!(normalise(&display("BI7777CT")), "BI7777CT");
    }

    #[test]
    fn a_listed_plate_matches_exactly_or_within_one_ocr_confusion() {
        assert_eq!(matches("AX1234BI", "AX1234BI"), Some(Match::Exact));
        assert_eq!(matches("AX1234B1", "AX1234BI"), Some(Match::Confusion), "1/I");
        assert_eq!(matches("AX12348I", "AX1234BI"), Some(Match::Confusion), "8/B");
        assert_eq!(matches("AX12Z48I", "AX1234BI"), None, "two characters differ");
        assert_eq!(matches("AX0234BI", "AX1234BI"), None, "0/1 is not a confusion");
        assert_eq!(matches("AX1234B", "AX1234BI"), None, "lengths differ");
        assert_eq!(matches("OX1234BI", "0X1234BI"), Some(Match::Confusion), "O/0");
        assert_eq!(matches("AX1234B1", "AX1234BB"), None, "1 and B are not confused");
    }

    #[test]
    fn voting_takes_each_character_from_the_most_confident_reads() {
        // Five reads of AX 1234 BI, each with one slip, as a passing car gives.
        let reads = [
            read("AX1234BI", 0.90),
            read("AX1Z34BI", 0.60),
            read("AX1234B1", 0.70),
            read("4X1234BI", 0.50),
            read("AX1234BI", 0.85),
        ];
        let v = vote(&reads).unwrap();
        assert_eq!(v.text, "AX1234BI");
        assert_eq!(v.reads, 5);
        assert!(v.confidence > 0.6 && v.confidence <= 1.0, "{v:?}");
        // A read that dropped a character does not drag the length.
        let v = vote(&[read("AX1234BI", 0.8), read("AX124BI", 0.9), read("AX1234BI", 0.7)]).unwrap();
        assert_eq!(v.text, "AX1234BI");
        // Mixed lengths cost confidence.
        let single = vote(&[read("AX1234BI", 0.8)]).unwrap();
        let mixed = vote(&[read("AX1234BI", 0.8), read("AX124BI", 0.8)]).unwrap();
        assert!(mixed.confidence < single.confidence, "{mixed:?} vs {single:?}");
        assert_eq!(vote(&[]), None);
        assert_eq!(vote(&[read("", 0.9)]), None);
    }

    #[test]
    fn format_fitting_swaps_confusions_by_place() {
        assert_eq!(fit_format("AX1234BI").as_deref(), Some("AX1234BI"));
        assert_eq!(fit_format("AX1234B1").as_deref(), Some("AX1234BI"), "1 in a letter's place");
        assert_eq!(fit_format("0X1234BI").as_deref(), Some("OX1234BI"), "0 in a letter's place");
        assert_eq!(fit_format("AXI23DBI").as_deref(), Some("AX1230BI"), "I and D in digits' places");
        assert_eq!(fit_format("8C0017KA").as_deref(), Some("BC0017KA"));
        assert_eq!(fit_format("UAAX1234BI").as_deref(), Some("AX1234BI"), "the strip's UA read too");
        assert_eq!(fit_format("12345AA").as_deref(), Some("12345AA"));
        assert_eq!(fit_format("I2345AA").as_deref(), Some("12345AA"));
        assert_eq!(fit_format("AX12Y4BI"), None, "Y has no digit twin");
        assert_eq!(fit_format("STOP"), None);
        assert_eq!(plate_text("B123XY").as_deref(), Some("B123XY"), "foreign, kept as read");
        assert_eq!(plate_text("OPEN"), None);
        assert_eq!(plate_text("1230"), None);
    }
}
