//! SMS length: which encoding a text needs (GSM-7 or UCS-2) and how many segments it is billed
//! as, counted the way Twilio's message-segment-calculator counts them, so the composer shows the
//! same number the invoice will.
//!
//! The rules (3GPP TS 23.038 as Twilio applies them):
//! - A text is GSM-7 only if every character is in the GSM-7 table; one character outside it
//!   switches the *whole* message to UCS-2.
//! - One SMS carries 140 octets. Alone, that is 160 septets (GSM-7) or 70 UTF-16 units (UCS-2).
//!   A longer text is split into concatenated segments, each giving up 6 octets to a user data
//!   header: 153 septets or 67 units per segment.
//! - The ten GSM-7 extension characters (`^ { } \ [ ~ ] | €` and form feed) cost two septets
//!   (ESC + code) in GSM-7, and one unit like any other character in UCS-2.
//! - A character is never split across segments: an ESC pair, a surrogate pair (emoji) or a
//!   whole emoji sequence (👍🏽, 🇬🇧, 👨‍👩‍👧) stays in one segment, which can leave a septet or unit
//!   unused at the end of the previous one.
//! - CRLF counts as two characters (CR and LF are both GSM-7).

use serde::Serialize;

/// Twilio's `Body` limit: a longer text is refused (error 21617), whatever the encoding.
pub const SMS_MAX_CHARS: usize = 1600;

/// Septets in a single GSM-7 SMS (140 octets × 8 / 7).
pub const GSM7_SINGLE: usize = 160;
/// Septets per segment of a concatenated GSM-7 SMS (the 6-octet header leaves 1072 bits).
pub const GSM7_MULTI: usize = 153;
/// UTF-16 units in a single UCS-2 SMS (140 octets / 2).
pub const UCS2_SINGLE: usize = 70;
/// UTF-16 units per segment of a concatenated UCS-2 SMS.
pub const UCS2_MULTI: usize = 67;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsEncoding {
    /// The GSM 03.38 default alphabet, 7 bits a character.
    Gsm7,
    /// UTF-16, 16 bits a unit; what any character outside GSM-7 forces.
    Ucs2,
}

impl SmsEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "gsm7",
            SmsEncoding::Ucs2 => "ucs2",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "GSM-7",
            SmsEncoding::Ucs2 => "Unicode (UCS-2)",
        }
    }

    /// Units in a message that fits one SMS, and units per segment once it does not.
    pub fn capacity(self) -> (usize, usize) {
        match self {
            SmsEncoding::Gsm7 => (GSM7_SINGLE, GSM7_MULTI),
            SmsEncoding::Ucs2 => (UCS2_SINGLE, UCS2_MULTI),
        }
    }

    /// What one character costs in this encoding: septets for GSM-7, UTF-16 units for UCS-2.
    fn cost(self, c: char) -> usize {
        match self {
            SmsEncoding::Gsm7 => gsm7_septets(c).map_or(0, usize::from),
            SmsEncoding::Ucs2 => c.len_utf16(),
        }
    }
}

/// How a text will travel as SMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmsInfo {
    pub encoding: SmsEncoding,
    /// Segments billed; 0 for an empty text.
    pub segments: usize,
    /// Septets (GSM-7) or UTF-16 units (UCS-2) the text takes, headers excluded.
    pub units_used: usize,
    /// The capacity of each segment at this length: 160/70 for one segment, 153/67 beyond.
    pub units_per_segment: usize,
    /// Units still free in the last segment before another one is needed.
    pub remaining_in_segment: usize,
    /// The characters that forced UCS-2, each once, in order of appearance; empty for GSM-7.
    pub non_gsm_chars: Vec<char>,
}

impl SmsInfo {
    /// "These characters switched the message to Unicode: ’ ç", for the composer; `None` for
    /// GSM-7 text.
    pub fn unicode_reason(&self) -> Option<String> {
        if self.non_gsm_chars.is_empty() {
            return None;
        }
        let shown: Vec<String> = self
            .non_gsm_chars
            .iter()
            .map(|c| display_char(*c))
            .collect();
        Some(format!(
            "These characters switched the message to Unicode (70 characters per SMS instead of 160): {}",
            shown.join(" ")
        ))
    }
}

/// Invisible characters are shown by code point so the user can find them.
fn display_char(c: char) -> String {
    if c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{FE00}'..='\u{FE0F}')
    {
        format!("U+{:04X}", u32::from(c))
    } else {
        c.to_string()
    }
}

/// Septets a character costs in GSM-7: 1 for the 127 basic characters, 2 for the 10 extension
/// characters, `None` when it is not GSM-7 at all. This is Twilio's table (UnicodeToGSM.ts):
/// lowercase `ç` is *not* in it (only `Ç`, at 0x09), nor is the backtick.
pub fn gsm7_septets(c: char) -> Option<u8> {
    match c {
        // 0x00-0x0F
        '@' | '£' | '$' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | '\n' | 'Ø' | 'ø' | '\r' | 'Å'
        | 'å'
        // 0x10-0x1F without ESC (0x1B)
        | 'Δ' | '_' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß'
        | 'É'
        // 0x20-0x3F: ASCII space to '?', except '$' (at 0x02) whose slot 0x24 holds '¤'
        | ' '..='#' | '¤' | '%'..='?'
        // 0x40-0x5F
        | '¡' | 'A'..='Z' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§'
        // 0x60-0x7F
        | '¿' | 'a'..='z' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        // Extension table, sent as ESC (0x1B) + code.
        '\u{000C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        _ => None,
    }
}

pub fn is_gsm7(c: char) -> bool {
    gsm7_septets(c).is_some()
}

/// Encoding, segments and room left for `text` as an SMS.
pub fn analyse(text: &str) -> SmsInfo {
    let mut non_gsm_chars: Vec<char> = Vec::new();
    for c in text.chars().filter(|c| !is_gsm7(*c)) {
        if !non_gsm_chars.contains(&c) {
            non_gsm_chars.push(c);
        }
    }
    let encoding = if non_gsm_chars.is_empty() {
        SmsEncoding::Gsm7
    } else {
        SmsEncoding::Ucs2
    };
    let (single, multi) = encoding.capacity();

    let units_used: usize = text.chars().map(|c| encoding.cost(c)).sum();
    if units_used == 0 {
        return SmsInfo {
            encoding,
            segments: 0,
            units_used,
            units_per_segment: single,
            remaining_in_segment: single,
            non_gsm_chars,
        };
    }
    if units_used <= single {
        return SmsInfo {
            encoding,
            segments: 1,
            units_used,
            units_per_segment: single,
            remaining_in_segment: single - units_used,
            non_gsm_chars,
        };
    }

    // Concatenated: fill each segment with whole clusters; a cluster that does not fit starts
    // the next segment. A cluster larger than a whole segment (a long run of combining marks)
    // cannot stay whole anywhere, so it is packed character by character.
    let mut segments = 1;
    let mut used = 0;
    let mut place = |cost: usize| {
        if used + cost > multi {
            segments += 1;
            used = 0;
        }
        used += cost;
    };
    for cluster in Clusters::new(text) {
        let cost: usize = cluster.chars().map(|c| encoding.cost(c)).sum();
        if cost <= multi {
            place(cost);
        } else {
            cluster.chars().for_each(|c| place(encoding.cost(c)));
        }
    }
    SmsInfo {
        encoding,
        segments,
        units_used,
        units_per_segment: multi,
        remaining_in_segment: multi - used,
        non_gsm_chars,
    }
}

/// Splits text into the units a segment boundary must not cut: single characters, and emoji or
/// accent sequences that render as one glyph. This follows the parts of Unicode's grapheme rules
/// (UAX #29) that matter in messages: combining marks, variation selectors, skin-tone modifiers,
/// tag sequences and ZWJ joins extend the previous character, and regional indicators pair up
/// into flags. CR and LF stay separate, as Twilio's calculator counts them.
struct Clusters<'a> {
    rest: &'a str,
}

impl<'a> Clusters<'a> {
    fn new(text: &'a str) -> Self {
        Clusters { rest: text }
    }
}

impl<'a> Iterator for Clusters<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let mut chars = self.rest.char_indices();
        let (_, first) = chars.next()?;
        let mut end = first.len_utf8();
        if !first.is_control() {
            let mut prev = first;
            let mut regional = usize::from(is_regional_indicator(first));
            for (i, c) in chars {
                let joins = is_extend(c)
                    || (prev == ZWJ && !c.is_control() && !c.is_whitespace())
                    || (is_regional_indicator(c) && regional % 2 == 1);
                if !joins {
                    break;
                }
                regional += usize::from(is_regional_indicator(c));
                end = i + c.len_utf8();
                prev = c;
            }
        }
        let (cluster, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(cluster)
    }
}

const ZWJ: char = '\u{200D}';

fn is_extend(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'       // combining diacritical marks
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'     // combining marks for symbols, incl. the keycap U+20E3
        | '\u{FE00}'..='\u{FE0F}'     // variation selectors (emoji presentation)
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{1F3FB}'..='\u{1F3FF}'   // skin-tone modifiers
        | '\u{E0020}'..='\u{E007F}'   // tags (subdivision flags)
        | '\u{E0100}'..='\u{E01EF}'
        | ZWJ)
}

fn is_regional_indicator(c: char) -> bool {
    matches!(c, '\u{1F1E6}'..='\u{1F1FF}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gsm(n: usize) -> String {
        "a".repeat(n)
    }

    #[test]
    fn the_table_has_127_basic_and_10_extension_characters() {
        let all = (0..=0x10FFFF).filter_map(char::from_u32);
        let (mut basic, mut extension) = (0, 0);
        for c in all {
            match gsm7_septets(c) {
                Some(1) => basic += 1,
                Some(2) => extension += 1,
                Some(n) => panic!("{c:?} costs {n}"),
                None => {}
            }
        }
        assert_eq!((basic, extension), (127, 10));
    }

    #[test]
    fn the_table_matches_the_reference_tsv() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/reference/gsm7-table.tsv"
        );
        let Ok(tsv) = std::fs::read_to_string(path) else {
            eprintln!("skipped: {path} is not present on this machine");
            return;
        };
        let mut rows = 0;
        for line in tsv
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split('\t').collect();
            let cost: u8 = cols[2].parse().unwrap();
            let code = u32::from_str_radix(cols[3].trim_start_matches("U+"), 16).unwrap();
            let c = char::from_u32(code).unwrap();
            assert_eq!(gsm7_septets(c), Some(cost), "{line}");
            rows += 1;
        }
        assert_eq!(rows, 137);
    }

    #[test]
    fn lowercase_c_cedilla_and_backtick_are_not_gsm() {
        assert!(is_gsm7('Ç'));
        assert!(!is_gsm7('ç'));
        assert!(!is_gsm7('`'));
        assert!(!is_gsm7('’'));
        assert!(is_gsm7('é') && is_gsm7('É') && is_gsm7('$') && is_gsm7('¤'));
    }

    #[test]
    fn empty_text_is_no_segment() {
        let info = analyse("");
        assert_eq!(info.encoding, SmsEncoding::Gsm7);
        assert_eq!(info.segments, 0);
        assert_eq!(info.units_used, 0);
        assert_eq!(info.remaining_in_segment, 160);
        assert_eq!(info.unicode_reason(), None);
    }

    #[test]
    fn gsm_single_and_multi_segment_boundaries() {
        let at = |n| analyse(&gsm(n));
        assert_eq!((at(1).segments, at(1).remaining_in_segment), (1, 159));
        assert_eq!((at(160).segments, at(160).remaining_in_segment), (1, 0));
        let over = at(161);
        assert_eq!((over.segments, over.units_per_segment), (2, 153));
        assert_eq!(over.remaining_in_segment, 153 * 2 - 161);
        assert_eq!(at(306).segments, 2);
        assert_eq!(at(306).remaining_in_segment, 0);
        assert_eq!(at(307).segments, 3);
        assert_eq!(at(307).remaining_in_segment, 152);
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        assert_eq!(analyse("€").units_used, 2);
        assert_eq!(analyse(&"€".repeat(80)).segments, 1);
        assert_eq!(analyse(&"€".repeat(81)).segments, 2);
        let info = analyse("{[]}~^|\\\u{000C}€");
        assert_eq!((info.encoding, info.units_used), (SmsEncoding::Gsm7, 20));
    }

    #[test]
    fn an_escape_pair_is_never_split_across_segments() {
        // 152 septets then '€' (2): the first segment's 153rd septet stays empty.
        let text = format!("{}€{}", gsm(152), gsm(10));
        let info = analyse(&text);
        assert_eq!(info.units_used, 164);
        assert_eq!(info.segments, 2);
        // second segment holds '€' (2) + 10 = 12
        assert_eq!(info.remaining_in_segment, 153 - 12);
        // The same with the escape landing exactly at the end fits in 153.
        let fits = analyse(&format!("{}€{}", gsm(151), gsm(10)));
        assert_eq!(fits.remaining_in_segment, 153 - 10);
    }

    #[test]
    fn one_non_gsm_character_switches_everything_to_ucs2() {
        let info = analyse(&format!("{}’", gsm(60)));
        assert_eq!(info.encoding, SmsEncoding::Ucs2);
        assert_eq!(info.units_used, 61);
        assert_eq!((info.segments, info.remaining_in_segment), (1, 9));
        assert_eq!(info.non_gsm_chars, vec!['’']);
        let reason = info.unicode_reason().unwrap();
        assert!(reason.contains('’'), "{reason}");
    }

    #[test]
    fn non_gsm_characters_are_listed_once_in_order() {
        let info = analyse("ça va? ’ç’ — ok");
        assert_eq!(info.non_gsm_chars, vec!['ç', '’', '—']);
    }

    #[test]
    fn extension_characters_cost_one_unit_in_ucs2() {
        let info = analyse("ç€");
        assert_eq!((info.encoding, info.units_used), (SmsEncoding::Ucs2, 2));
    }

    #[test]
    fn ucs2_boundaries() {
        let text = |n: usize| format!("ç{}", gsm(n - 1));
        assert_eq!(analyse(&text(70)).segments, 1);
        assert_eq!(analyse(&text(71)).segments, 2);
        assert_eq!(analyse(&text(134)).segments, 2);
        assert_eq!(analyse(&text(134)).remaining_in_segment, 0);
        assert_eq!(analyse(&text(135)).segments, 3);
    }

    #[test]
    fn emoji_count_two_units_and_are_never_split() {
        assert_eq!(analyse("😀").units_used, 2);
        assert_eq!(analyse(&"😀".repeat(35)).segments, 1);
        // 66 units then an emoji: it does not fit in the first segment's 67th unit.
        let text = format!("ç{}😀", gsm(65));
        let info = analyse(&format!("{text}{}", gsm(10)));
        assert_eq!(info.segments, 2);
        assert_eq!(info.remaining_in_segment, 67 - 12);
    }

    #[test]
    fn emoji_sequences_stay_together() {
        for emoji in ["👍🏽", "🇬🇧", "👨‍👩‍👧", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
        {
            let clusters: Vec<&str> = Clusters::new(emoji).collect();
            assert_eq!(clusters, vec![emoji], "{emoji:?}");
        }
        let clusters: Vec<&str> = Clusters::new("🇬🇧🇫🇷a\r\n").collect();
        assert_eq!(clusters, vec!["🇬🇧", "🇫🇷", "a", "\r", "\n"]);
        // The family emoji (8 units) straddling the 67-unit boundary moves whole.
        let text = format!("ç{}👨‍👩‍👧", gsm(62));
        let info = analyse(&text);
        assert_eq!(info.units_used, 71);
        assert_eq!((info.segments, info.remaining_in_segment), (2, 67 - 8));
    }

    #[test]
    fn a_cluster_larger_than_a_segment_is_split_by_character() {
        let zalgo = format!("ç{}", "\u{0301}".repeat(100));
        let info = analyse(&zalgo);
        assert_eq!(info.units_used, 101);
        assert_eq!(info.segments, 2);
    }

    #[test]
    fn crlf_counts_two_gsm_characters() {
        let info = analyse("a\r\nb");
        assert_eq!((info.encoding, info.units_used), (SmsEncoding::Gsm7, 4));
    }

    #[test]
    fn invisible_culprits_are_named_by_code_point() {
        let info = analyse("a\u{00A0}b\tc");
        let reason = info.unicode_reason().unwrap();
        assert!(
            reason.contains("U+00A0") && reason.contains("U+0009"),
            "{reason}"
        );
    }

    fn gsm_basic_char() -> impl Strategy<Value = char> {
        prop::sample::select(
            (0..0x2FF)
                .filter_map(char::from_u32)
                .chain("ΔΦΓΛΩΠΨΣΘΞ".chars())
                .filter(|c| gsm7_septets(*c) == Some(1))
                .collect::<Vec<_>>(),
        )
    }

    fn gsm_any_char() -> impl Strategy<Value = char> {
        prop_oneof![4 => gsm_basic_char(), 1 => prop::sample::select("^{}\\[~]|€\u{000C}".chars().collect::<Vec<_>>())]
    }

    proptest! {
        #[test]
        fn up_to_160_basic_gsm_characters_is_one_segment(s in prop::collection::vec(gsm_basic_char(), 1..=160)) {
            let text: String = s.into_iter().collect();
            let info = analyse(&text);
            prop_assert_eq!(info.encoding, SmsEncoding::Gsm7);
            prop_assert_eq!(info.segments, 1);
        }

        #[test]
        fn basic_gsm_segments_are_the_ceiling_of_153(n in 161usize..2000) {
            let info = analyse(&gsm(n));
            prop_assert_eq!(info.segments, n.div_ceil(153));
            prop_assert_eq!(info.units_used, n);
        }

        #[test]
        fn segments_never_decrease_as_gsm_text_grows(
            s in prop::collection::vec(gsm_any_char(), 0..700),
            extra in gsm_any_char(),
        ) {
            let text: String = s.into_iter().collect();
            let longer = format!("{text}{extra}");
            prop_assert!(analyse(&longer).segments >= analyse(&text).segments);
        }

        #[test]
        fn segments_hold_the_text_with_at_most_one_wasted_septet_each(
            s in prop::collection::vec(gsm_any_char(), 1..700),
        ) {
            let text: String = s.into_iter().collect();
            let info = analyse(&text);
            prop_assert_eq!(info.encoding, SmsEncoding::Gsm7);
            prop_assert!(info.units_used <= info.segments * info.units_per_segment);
            if info.segments > 1 {
                prop_assert!(info.units_used > (info.segments - 1) * (info.units_per_segment - 1));
                prop_assert_eq!(info.units_per_segment, 153);
            }
        }

        #[test]
        fn encoding_is_ucs2_exactly_when_a_character_is_outside_gsm(text in "\\PC{0,300}") {
            let info = analyse(&text);
            let outside = text.chars().any(|c| !is_gsm7(c));
            prop_assert_eq!(info.encoding == SmsEncoding::Ucs2, outside);
            prop_assert_eq!(info.non_gsm_chars.is_empty(), !outside);
            prop_assert!(info.remaining_in_segment <= info.units_per_segment);
            if info.encoding == SmsEncoding::Ucs2 {
                prop_assert_eq!(info.units_used, text.encode_utf16().count());
            }
        }

        #[test]
        fn clusters_cover_the_text_exactly(text in "\\PC{0,200}") {
            let joined: String = Clusters::new(&text).collect();
            prop_assert_eq!(joined, text);
        }
    }
}
